#!/usr/bin/env python3
"""Gearman worker written with pygearman (PyPI `pygearman`, module `gearman`).

usage: python3 pygearman_worker.py HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]

GearmanWorker.register_task(FUNCTION as bytes) + work(); stops after COUNT jobs (after_job
returns False) and exits 0; exits 3 if TIMEOUT_SECS pass first.
MODE:
  reverse    the task callback returns the reversed payload (WORK_COMPLETE)
If OUTFILE is given, "started <payload>" / "done <payload>" lines are appended to it.
stdout: "ready", then "job <handle> <payload>" per job, then "exit <jobs done>".
"""
import os
import sys
import threading
import time

import gearman


def note(outfile, line):
    if outfile:
        with open(outfile, "a") as f:
            f.write(line + "\n")


def text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class CountingWorker(gearman.GearmanWorker):
    def __init__(self, host_list, count):
        super().__init__(host_list)
        self.count = count
        self.done = 0

    def after_job(self):
        # pygearman 0.2.6 may call after_job more than once per job, so the jobs
        # are counted in the task callback.
        return self.done < self.count


def main():
    if len(sys.argv) not in (7, 8):
        sys.stderr.write(__doc__)
        return 2
    host, port, function, mode, count, timeout = sys.argv[1:7]
    outfile = sys.argv[7] if len(sys.argv) == 8 else None
    if mode != "reverse":
        sys.stderr.write("unknown mode %s\n" % mode)
        return 2
    timeout = float(timeout)

    def watchdog():
        time.sleep(timeout)
        print("timeout", flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    worker = CountingWorker(["%s:%s" % (host, port)], int(count))
    worker.set_client_id("protocol-tests-pygearman-worker")

    def task(gearman_worker, job):
        payload = text(job.data)
        print("job %s %s" % (text(job.handle), payload), flush=True)
        note(outfile, "started " + payload)
        result = payload[::-1]
        note(outfile, "done " + payload)
        gearman_worker.done += 1
        return result

    # The name must be registered as bytes: pygearman 0.2.6 compares the function
    # name of JOB_ASSIGN_UNIQ (bytes) with the registered names.
    worker.register_task(function.encode(), task)
    print("ready", flush=True)
    worker.work(poll_timeout=1.0)
    print("exit %d" % worker.done, flush=True)
    worker.shutdown()
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    os._exit(rc)
