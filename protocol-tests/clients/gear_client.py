#!/usr/bin/env python3
"""Gearman client written with the OpenStack `gear` library.

usage: python3 gear_client.py HOST PORT MODE FUNCTION PAYLOAD
  normal      submit a foreground job and wait (at most 12 s) for it to finish; prints
              "result=<all WORK_DATA/WORK_COMPLETE data concatenated>",
              "complete=<True|False>", "failure=<True|False>",
              "exception=<exception data or None>"
  background  submit a background job; prints "handle=<handle>"
Exit status 0 on success, 3 on timeout.
"""
import os
import sys
import time

import gear


def main():
    if len(sys.argv) != 6:
        sys.stderr.write(__doc__)
        return 2
    host, port, mode, function, payload = sys.argv[1:]
    client = gear.Client(client_id="protocol-tests-gear-client")
    try:
        client.addServer(host, int(port))
        client.waitForServer(timeout=5)
        job = gear.TextJob(function, payload)
        if mode == "normal":
            client.submitJob(job, background=False, timeout=10)
            deadline = time.time() + 12
            while not job.complete and time.time() < deadline:
                time.sleep(0.01)
            if not job.complete:
                print("timeout waiting for job %s" % job.handle.decode(), flush=True)
                return 3
            print("result=%s" % "".join(job.data))
            print("complete=%s" % job.complete)
            print("failure=%s" % job.failure)
            print("exception=%s" % job.exception)
        elif mode == "background":
            client.submitJob(job, background=True, timeout=10)
            print("handle=%s" % job.handle.decode())
        else:
            sys.stderr.write("unknown mode %s\n" % mode)
            return 2
        sys.stdout.flush()
        return 0
    finally:
        client.shutdown()


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    # gear runs background threads; do not let them delay the exit.
    os._exit(rc)
