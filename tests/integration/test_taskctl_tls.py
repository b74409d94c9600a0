"""taskctl over TLS with client certificates (--cacert, --cert, --key)
against a RabbitMQ node of its own whose TLS listener demands a client
certificate: status through it lists a taskd on that node; without the
CA or without a certificate the connection is refused.  One node boot for
the whole module."""

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import unittest

from taskdtest import RABBITMQ_PRIVATE, TaskdTestCase, Taskd, new_id

TASKCTL = os.environ.get("TASKCTL", "")


def free_port():
    rng = random.SystemRandom()
    for _ in range(200):
        p = rng.randrange(20000, 40000)
        ok = True
        for q in (p, p + 1, p + 2, p + 20000):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise AssertionError("no free ports")


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def make_certs(d):
    """A CA, a server certificate for localhost, a client certificate."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=taskd test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name,
                "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", name + ".ext",
                "-out", name + ".pem", cwd=d)


class TaskctlTLS(TaskdTestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("no openssl")
        # Readable by the rabbitmq user, unlike the tests' own temp dirs.
        cls.certs = tempfile.mkdtemp(prefix="taskd-tls-certs.")
        os.chmod(cls.certs, 0o755)
        make_certs(cls.certs)
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", cls.certs], check=True)
        cls.port = free_port()
        cls.tls_port = cls.port + 2
        conf = os.path.join(cls.certs, "tls.conf")
        with open(conf, "w") as f:
            f.write("listeners.ssl.default = 127.0.0.1:%d\n" % cls.tls_port)
            f.write("ssl_options.cacertfile = %s/ca.pem\n" % cls.certs)
            f.write("ssl_options.certfile = %s/server.pem\n" % cls.certs)
            f.write("ssl_options.keyfile = %s/server.key\n" % cls.certs)
            f.write("ssl_options.verify = verify_peer\n")
            f.write("ssl_options.fail_if_no_peer_cert = true\n")
        cls.node_dir = os.path.join(tempfile.gettempdir(), "taskd-tls-node.%d" % cls.port)
        env = dict(os.environ, RABBITMQ_PRIVATE_CONF=conf)
        p = subprocess.run([RABBITMQ_PRIVATE, "start", cls.node_dir, str(cls.port)],
                           env=env, capture_output=True, timeout=150)
        if p.returncode != 0:
            shutil.rmtree(cls.certs, ignore_errors=True)
            raise AssertionError("the TLS node did not start: %r" % (p,))

    @classmethod
    def tearDownClass(cls):
        subprocess.run([RABBITMQ_PRIVATE, "stop", cls.node_dir], capture_output=True,
                       timeout=120)
        shutil.rmtree(cls.certs, ignore_errors=True)

    def tls_uri(self):
        return "amqps://guest:guest@localhost:%d/%%2f" % self.tls_port

    def taskctl(self, *args):
        p = subprocess.run([TASKCTL] + list(args), capture_output=True, timeout=60)
        return p

    def test_status_over_mutual_tls(self):
        exchange = self.prefix + ".control"
        # taskd on the same node's plain listener (its own TLS is not what
        # this test is about).
        d = Taskd(self.workdir, self.client, {
            "broker.uri": "amqp://guest:guest@127.0.0.1:%d/%%2f" % self.port,
            "queue.name": self.queue, "reply.queue": "",
            "control.exchange": exchange}, name="tlsnode")
        self.daemons.append(d)
        d.start(wait=False)
        c = os.path.join(self.certs, "")
        good = ["-u", self.tls_uri(), "--cacert", c + "ca.pem",
                "--cert", c + "client.pem", "--key", c + "client.key"]

        def listed():
            p = self.taskctl(*good, "status", "--json", "--exchange", exchange,
                             "--expect", "1", "--timeout", "2")
            return p.returncode == 0 and json.loads(p.stdout)
        doc = self.wait_for("status over TLS lists the node", listed, 30)
        self.assertEqual(doc[0]["node"].rsplit(":", 1)[1], str(d.pid))
        # A dead node first in the list: the next one is tried.
        p = self.taskctl("-u", "amqps://guest:guest@localhost:1/%2f," + self.tls_uri(),
                         *good[2:], "status", "--exchange", exchange, "--expect", "1")
        self.assertEqual(p.returncode, 0, repr(p))

    def test_no_client_certificate_is_refused(self):
        c = os.path.join(self.certs, "")
        p = self.taskctl("-u", self.tls_uri(), "--cacert", c + "ca.pem", "status",
                         "--exchange", new_id("x"), "--timeout", "1")
        self.assertEqual(p.returncode, 1, repr(p))
        # With TLS 1.3 the server's refusal of the missing certificate
        # arrives after the client's handshake, at the first read (login).
        self.assertRegex(p.stderr, rb"cannot connect|login: a SSL error")

    def test_unknown_ca_is_refused(self):
        c = os.path.join(self.certs, "")
        p = self.taskctl("-u", self.tls_uri(), "--cert", c + "client.pem",
                         "--key", c + "client.key", "status", "--timeout", "1")
        self.assertEqual(p.returncode, 1, repr(p))
        self.assertIn(b"cannot connect", p.stderr)

    def test_bad_key_file_is_said(self):
        p = self.taskctl("-u", self.tls_uri(), "--cert", "/nonexistent.pem",
                         "--key", "/nonexistent.key", "status")
        self.assertEqual(p.returncode, 1, repr(p))
        self.assertIn(b"client certificate", p.stderr)
