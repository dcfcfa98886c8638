#!/usr/bin/env python3
"""Gearman client written with pygearman (PyPI `pygearman`, the Python 3 fork of the
classic python-gearman; it installs the module `gearman`).

usage: python3 pygearman_client.py HOST PORT MODE FUNCTION PAYLOAD
  normal      GearmanClient.submit_job(wait_until_complete=True, poll_timeout=10);
              prints "state=<job_request.state>", "result=<job_request.result>"
  background  submit_job(background=True, wait_until_complete=False); prints
              "state=<state>", "handle=<job handle>"
Exit status 0 on success, 3 if the job did not reach COMPLETE / CREATED.
"""
import os
import sys

import gearman


def text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "%s" % (value,)


def main():
    if len(sys.argv) != 6:
        sys.stderr.write(__doc__)
        return 2
    host, port, mode, function, payload = sys.argv[1:]
    client = gearman.GearmanClient(["%s:%s" % (host, port)])
    try:
        if mode == "normal":
            req = client.submit_job(
                function, payload, wait_until_complete=True, poll_timeout=10
            )
            print("state=%s" % req.state)
            print("result=%s" % text(req.result))
            return 0 if req.state == gearman.JOB_COMPLETE else 3
        elif mode == "background":
            req = client.submit_job(
                function, payload, background=True, wait_until_complete=False,
                poll_timeout=10,
            )
            print("state=%s" % req.state)
            print("handle=%s" % text(req.job.handle))
            return 0 if req.state == gearman.JOB_CREATED else 3
        else:
            sys.stderr.write("unknown mode %s\n" % mode)
            return 2
    finally:
        sys.stdout.flush()
        client.shutdown()


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    os._exit(rc)
