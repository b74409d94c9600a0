#!/usr/bin/env node
// Submit one task to taskd and print its result: RPC over RabbitMQ's direct
// reply-to, with amqplib (npm install in this directory first).
//
//     node submit.js TASK [PAYLOAD]
//
// Environment: AMQP_URL (default amqp://guest:guest@localhost:5672/%2f),
// TASKD_QUEUE (default distributed_tasks), TASK_TIMEOUT in seconds (default
// 30).  Prints the result body; exit status 0 when taskd-status is "ok", 2
// for any other status, 1 when no result came.
'use strict';

const amqp = require('amqplib');
const { randomUUID } = require('crypto');

const REPLY_TO = 'amq.rabbitmq.reply-to';

async function submit(task, payload) {
  const url = process.env.AMQP_URL || 'amqp://guest:guest@localhost:5672/%2f';
  const queue = process.env.TASKD_QUEUE || 'distributed_tasks';
  const timeout = Number(process.env.TASK_TIMEOUT || 30);
  const corr = randomUUID();

  const conn = await amqp.connect(url);
  try {
    // A confirm channel: the publish callback says whether the broker took it.
    const ch = await conn.createConfirmChannel();
    let timer;
    const result = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(
        `no result within ${timeout + 5} s: is taskd running?`)), (timeout + 5) * 1000);
      ch.on('return', () => reject(new Error(`no queue named '${queue}'`)));
      // Direct reply-to: consume before publishing, on the publishing channel.
      ch.consume(REPLY_TO, (msg) => {
        if (msg.properties.correlationId === corr) resolve(msg);  // ignore strangers
      }, { noAck: true }).catch(reject);
    });
    await new Promise((resolve, reject) => {
      ch.publish('', queue, Buffer.from(payload), {
        type: task, messageId: corr, correlationId: corr, replyTo: REPLY_TO,
        headers: { timeout }, mandatory: true,
      }, (err) => (err ? reject(err) : resolve()));
    });
    try {
      return await result;
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await conn.close();
  }
}

async function main() {
  const [task, payload = ''] = process.argv.slice(2);
  if (!task || process.argv.length > 4) {
    console.error('usage: node submit.js TASK [PAYLOAD]');
    return 1;
  }
  try {
    const msg = await submit(task, payload);
    const status = String((msg.properties.headers || {})['taskd-status']);
    process.stdout.write(Buffer.concat([msg.content, Buffer.from('\n')]));
    if (status !== 'ok') {
      console.error(`taskd-status: ${status}`);
      return 2;
    }
    return 0;
  } catch (err) {
    console.error(`submit.js: ${err.message}`);
    return 1;
  }
}

main().then((code) => { process.exitCode = code; });
