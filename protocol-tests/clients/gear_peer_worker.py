#!/usr/bin/env python3
"""Gearman worker written with the OpenStack `gear` library, for the peer
aggregation tests (tests/peers/).

usage: python3 gear_peer_worker.py HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]

Like gear_worker.py (same output lines, same OUTFILE lines), plus:
  * TCP_NODELAY on the worker's connection. gear writes WORK_COMPLETE and the
    next GRAB_JOB as two small writes, so without it every job waits for a
    delayed ACK (about 40 ms on Linux loopback): 2000 jobs would take 90 s.
  * COUNT 0 means "no limit": run jobs until TIMEOUT_SECS pass, then exit 0
    (not 3), so a test can start a worker for "whatever is left".
MODE:
  reverse    complete with the reversed payload
  chunks     WORK_STATUS 1/4, WORK_DATA "chunk1:", WORK_WARNING "warn:<payload>",
             WORK_DATA "chunk2:", WORK_STATUS 4/4, complete with "final:<payload>"
  sleep:MS   sleep MS milliseconds inside the job, then complete reversed
stdout: "ready", then "job <handle> <payload>" per job (flushed before the job's
work starts), then "exit <jobs done>".
"""
import os
import socket
import sys
import threading
import time

import gear


def note(outfile, line):
    if outfile:
        with open(outfile, "a") as f:
            f.write(line + "\n")


def nodelay(worker):
    for connection in list(worker.active_connections):
        sock = getattr(connection, "conn", None)
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass


def main():
    if len(sys.argv) not in (7, 8):
        sys.stderr.write(__doc__)
        return 2
    host, port, function, mode, count, timeout = sys.argv[1:7]
    outfile = sys.argv[7] if len(sys.argv) == 8 else None
    count = int(count)
    timeout = float(timeout)
    sleep_s = 0.0
    if mode.startswith("sleep:"):
        sleep_s = int(mode.split(":", 1)[1]) / 1000.0
        mode = "sleep"
    if mode not in ("reverse", "chunks", "sleep"):
        sys.stderr.write("unknown mode %s\n" % mode)
        return 2

    def watchdog():
        time.sleep(timeout)
        print("timeout", flush=True)
        os._exit(0 if count == 0 else 3)

    threading.Thread(target=watchdog, daemon=True).start()

    worker = gear.TextWorker(client_id="protocol-tests-gear-peer-worker")
    worker.addServer(host, int(port))
    worker.waitForServer(timeout=10)
    nodelay(worker)
    worker.registerFunction(function)
    print("ready", flush=True)
    done = 0
    while count == 0 or done < count:
        job = worker.getJob()
        payload = job.arguments
        print("job %s %s" % (job.handle.decode(), payload), flush=True)
        note(outfile, "started " + payload)
        if mode == "reverse":
            job.sendWorkComplete(payload[::-1])
        elif mode == "chunks":
            job.sendWorkStatus(1, 4)
            job.sendWorkData("chunk1:")
            job.sendWorkWarning("warn:" + payload)
            job.sendWorkData("chunk2:")
            job.sendWorkStatus(4, 4)
            job.sendWorkComplete("final:" + payload)
        else:
            time.sleep(sleep_s)
            job.sendWorkComplete(payload[::-1])
        done += 1
        note(outfile, "done " + payload)
    print("exit %d" % done, flush=True)
    # Give the last packet a moment to leave before closing the socket.
    time.sleep(0.1)
    worker.shutdown()
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    os._exit(rc)
