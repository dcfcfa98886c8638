#!/usr/bin/env python3
"""Gearman worker written with the OpenStack `gear` library.

usage: python3 gear_worker.py HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]

Registers FUNCTION, runs COUNT jobs, then exits 0; exits 3 if TIMEOUT_SECS pass first.
MODE:
  reverse    complete with the reversed payload
  chunks     WORK_STATUS 1/4, WORK_DATA "chunk1:", WORK_WARNING "warn:<payload>",
             WORK_DATA "chunk2:", WORK_STATUS 4/4, complete with "final:<payload>"
  fail       WORK_FAIL
  exception  WORK_EXCEPTION "boom:<payload>"
If OUTFILE is given, "started <payload>" / "done <payload>" lines are appended to it.
stdout: "ready", then "job <handle> <payload>" per job, then "exit <jobs done>".
"""
import os
import sys
import threading
import time

import gear


def note(outfile, line):
    if outfile:
        with open(outfile, "a") as f:
            f.write(line + "\n")


def main():
    if len(sys.argv) not in (7, 8):
        sys.stderr.write(__doc__)
        return 2
    host, port, function, mode, count, timeout = sys.argv[1:7]
    outfile = sys.argv[7] if len(sys.argv) == 8 else None
    count = int(count)
    timeout = float(timeout)

    def watchdog():
        time.sleep(timeout)
        print("timeout", flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    worker = gear.TextWorker(client_id="protocol-tests-gear-worker")
    worker.addServer(host, int(port))
    worker.waitForServer(timeout=10)
    worker.registerFunction(function)
    print("ready", flush=True)
    done = 0
    while done < count:
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
        elif mode == "fail":
            job.sendWorkFail()
        elif mode == "exception":
            job.sendWorkException("boom:" + payload)
        else:
            sys.stderr.write("unknown mode %s\n" % mode)
            return 2
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
