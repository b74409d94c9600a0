"""A RabbitMQ cluster of three (or more) nodes on loopback, for any test.

    with Cluster(3) as c:           # the nodes start in parallel, then join
        c.uris()                    # ["amqp://guest:guest@127.0.0.1:P1/%2f", ...]
        c.kill9(0); c.restart(0)    # the VM dies and comes back (rejoins)
        c.freeze(1); c.thaw(1)      # SIGSTOP / SIGCONT
        c.ctl(2, "stop_app")        # rabbitmqctl against node 2

Each node is a tests/rabbitmq-private node with a name, AMQP port,
distribution port and directory of its own; the nodes share one Erlang
cookie and one epmd (on a port of the cluster's own), which is what lets
them find each other.  Nodes 1.. join node 0 with stop_app, join_cluster
and start_app; start() returns once every node lists all of them as
running.  stop() (also on failure, and from the context manager) stops
every node and the epmd.  With tls= each node also has a TLS listener
that demands a client certificate (verify_peer, fail_if_no_peer_cert).

Needs root, like tests/rabbitmq-private.
"""

import errno
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PRIVATE = os.environ.get("RABBITMQ_PRIVATE") or os.path.join(HERE, "..", "rabbitmq-private")


def _free(port):
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::1")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            s.bind((addr, port))
        except OSError as e:
            if family == socket.AF_INET6 and e.errno != errno.EADDRINUSE:
                continue
            return False
        finally:
            s.close()
    return True


def _ports(n, offsets):
    """n base ports P with P + every offset free, and none of them shared."""
    rng = random.SystemRandom()
    taken = set()
    out = []
    for _ in range(400):
        if len(out) == n:
            return out
        p = rng.randrange(20000, 30000)
        want = {p + o for o in offsets}
        if want & taken or not all(_free(q) for q in want):
            continue
        taken |= want
        out.append(p)
    raise AssertionError("no %d free port sets found (bases 20000-30000)" % n)


class Cluster:
    """Three (size) nodes of one cluster; see the module's text."""

    # AMQP on P, the TLS listener on P + 10000, distribution on P + 20000
    # (rabbitmq-private's rule); epmd on the first node's P + 1.
    TLS_OFFSET = 10000

    def __init__(self, size=3, tls=None):
        """tls: None, or {"cacert", "cert", "key"} paths for the listeners."""
        self.size = size
        self.tls = tls
        self.parent = None
        self.ports = []
        self.dirs = []
        self.epmd_port = None
        self.cookie = "".join(random.SystemRandom().choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
                              for _ in range(20))
        self.started_in = None

    # life cycle -------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _env(self):
        env = dict(os.environ, RMQ_EPMD_PORT=str(self.epmd_port), RMQ_COOKIE=self.cookie,
                   RMQ_KEEP_EPMD="1")
        env.pop("RMQ_EXTRA_CONF", None)
        return env

    def start(self, timeout=180):
        t0 = time.monotonic()
        self.ports = _ports(self.size, (0, 1, 20000, self.TLS_OFFSET))
        self.epmd_port = self.ports[0] + 1
        self.parent = tempfile.mkdtemp(prefix="taskd-cluster.")
        os.chmod(self.parent, 0o711)
        self.dirs = [os.path.join(self.parent, "n%d" % i) for i in range(self.size)]
        procs = []
        for i, (d, p) in enumerate(zip(self.dirs, self.ports)):
            env = self._env()
            # A node frozen and thawed may come back to a partition (seen
            # in CI after a SIGSTOP): autoheal restarts the losing side
            # instead of leaving the cluster split for good.
            extra = os.path.join(self.parent, "n%d.extra.conf" % i)
            with open(extra, "w") as f:
                f.write("cluster_partition_handling = autoheal\n")
            env["RMQ_EXTRA_CONF"] = extra
            if self.tls:
                with open(extra, "a") as f:
                    f.write("listeners.ssl.default = 127.0.0.1:%d\n"
                            "ssl_options.cacertfile = %s\n"
                            "ssl_options.certfile = %s\n"
                            "ssl_options.keyfile = %s\n"
                            "ssl_options.verify = verify_peer\n"
                            "ssl_options.fail_if_no_peer_cert = true\n"
                            % (p + self.TLS_OFFSET, self.tls["cacert"], self.tls["cert"],
                               self.tls["key"]))
            # In parallel: a node's boot is mostly waiting on itself.
            procs.append(subprocess.Popen([PRIVATE, "start", d, str(p)], env=env,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT))
        failed = []
        for i, pr in enumerate(procs):
            try:
                out, _ = pr.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                pr.kill()
                out, _ = pr.communicate()
            if pr.returncode != 0:
                failed.append("node %d: %s" % (i, out.decode(errors="replace").strip()))
        if failed:
            raise AssertionError("cluster nodes did not start:\n" + "\n".join(failed))
        # Joins one at a time: two nodes joining at once can trip over the
        # same schema lock on the seed node.
        for i in range(1, self.size):
            self.ctl(i, "stop_app")
            self.ctl(i, "join_cluster", self.nodename(0))
            self.ctl(i, "start_app")
        self.wait_running(range(self.size), timeout=60)
        self.started_in = time.monotonic() - t0

    def stop(self):
        if not self.dirs:
            return
        # In parallel too; each thaws its VM first (rabbitmq-private stop).
        threads = [threading.Thread(target=self._stop_node, args=(d,)) for d in self.dirs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        if self.epmd_port:
            subprocess.run(["su", "rabbitmq", "-s", "/bin/sh", "-c",
                            "timeout 10 epmd -port %d -kill" % self.epmd_port],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
        if self.parent:
            shutil.rmtree(self.parent, ignore_errors=True)
        self.dirs = []

    def _stop_node(self, d):
        subprocess.run([PRIVATE, "stop", d], env=self._env(), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=120)

    # names and addresses ------------------------------------------------------

    def nodename(self, i):
        return "taskdtest%d@localhost" % self.ports[i]

    def port(self, i):
        return self.ports[i]

    def tls_port(self, i):
        return self.ports[i] + self.TLS_OFFSET

    def uri(self, i, host="127.0.0.1"):
        return "amqp://guest:guest@%s:%d/%%2f" % (host, self.ports[i])

    def uris(self):
        return [self.uri(i) for i in range(self.size)]

    def node_of_port(self, port):
        """The index of the node whose AMQP or TLS port this is, or None."""
        for i, p in enumerate(self.ports):
            if port in (p, p + self.TLS_OFFSET):
                return i
        return None

    # control ------------------------------------------------------------------

    def ctl(self, i, *args, timeout=90):
        """rabbitmqctl against node i; returns its output."""
        cmd = [PRIVATE, "ctl", self.dirs[i]] + [str(a) for a in args]
        p = subprocess.run(cmd, env=self._env(), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                 (p.stdout + p.stderr).decode(errors="replace").strip()))
        return p.stdout.decode(errors="replace")

    def pid(self, i):
        p = subprocess.run([PRIVATE, "pid", self.dirs[i]], env=self._env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError("no VM for node %d: %s" % (i, p.stderr.decode(errors="replace")))
        return int(p.stdout.decode().strip())

    def running(self, i):
        """The nodes node i sees running (a set of names), or None when it
        does not answer."""
        try:
            out = self.ctl(i, "eval",
                           "io:format(\"~p~n\", [rabbit_nodes:all_running()]).", timeout=20)
        except (AssertionError, subprocess.TimeoutExpired):
            return None
        return set(re.findall(r"[\w.-]+@[\w.-]+", out))

    def wait_running(self, nodes, timeout):
        """Waits until every node of `nodes` sees all of `nodes` running."""
        want = {self.nodename(i) for i in nodes}
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            seen = [self.running(i) for i in nodes]
            if all(s is not None and want <= s for s in seen):
                return
            if time.monotonic() >= deadline:
                raise AssertionError("cluster: nodes %s not all running within %.0f s "
                                     "(each sees %s)" % (sorted(want), timeout, seen))
            time.sleep(0.5)

    def leader(self, queue, via=None):
        """The index of the node that leads quorum queue `queue`, or None."""
        for i in ([via] if via is not None else range(self.size)):
            try:
                out = self.ctl(i, "list_queues", "name", "leader", timeout=30)
            except (AssertionError, subprocess.TimeoutExpired):
                continue
            for line in out.splitlines():
                parts = line.split("\t")
                if len(parts) == 2 and parts[0] == queue:
                    for j in range(self.size):
                        if parts[1].strip() == self.nodename(j):
                            return j
            return None
        return None

    def move_leader(self, queue, to, vhost="/"):
        """Makes node `to` the leader of quorum queue `queue` (Ra's own
        leadership transfer, asked of the current leader); waits until
        list_queues says so."""
        src = self.leader(queue)
        if src is None or src == to:
            return
        expr = ("{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"%s\">>, queue, <<\"%s\">>)),"
                " {Name, _} = amqqueue:get_pid(Q),"
                " ra:transfer_leadership({Name, node()}, {Name, '%s'})."
                % (vhost, queue, self.nodename(to)))
        self.ctl(src, "eval", expr)
        deadline = time.monotonic() + 30
        while self.leader(queue, via=to) != to:
            if time.monotonic() >= deadline:
                raise AssertionError("queue %s: leadership did not move to node %d" % (queue, to))
            time.sleep(0.2)

    def kill9(self, i):
        os.kill(self.pid(i), signal.SIGKILL)

    def restart(self, i):
        """Starts node i again after kill9; it rejoins the cluster."""
        p = subprocess.run([PRIVATE, "restart", self.dirs[i]], env=self._env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=180)
        if p.returncode != 0:
            raise AssertionError("node %d did not restart: %s"
                                 % (i, (p.stdout + p.stderr).decode(errors="replace")))
        self.wait_running(range(self.size), timeout=60)

    def freeze(self, i):
        os.kill(self.pid(i), signal.SIGSTOP)

    def thaw(self, i):
        os.kill(self.pid(i), signal.SIGCONT)
