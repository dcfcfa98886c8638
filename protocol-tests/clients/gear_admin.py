#!/usr/bin/env python3
"""Gearman admin client written with the OpenStack `gear` library's admin requests.

usage: python3 gear_admin.py HOST PORT COMMAND [HANDLE]
  status            gear.StatusAdminRequest
  workers           gear.WorkersAdminRequest
  show_jobs         gear.ShowJobsAdminRequest
  show_unique_jobs  gear.ShowUniqueJobsAdminRequest
  cancel HANDLE     gear.CancelJobAdminRequest(HANDLE)
Sends the request on a gear.Client connection (Connection.sendAdminRequest, 10 s
timeout) and prints request.response exactly as gear returns it (decoded as UTF-8),
with nothing added. Exit status 0 on success, 3 on timeout.
"""
import os
import sys

import gear

REQUESTS = {
    "status": gear.StatusAdminRequest,
    "workers": gear.WorkersAdminRequest,
    "show_jobs": gear.ShowJobsAdminRequest,
    "show_unique_jobs": gear.ShowUniqueJobsAdminRequest,
}


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    host, port, command = sys.argv[1:4]
    if command == "cancel" and len(sys.argv) == 5:
        request = gear.CancelJobAdminRequest(sys.argv[4])
    elif command in REQUESTS and len(sys.argv) == 4:
        request = REQUESTS[command]()
    else:
        sys.stderr.write(__doc__)
        return 2
    client = gear.Client(client_id="protocol-tests-gear-admin")
    try:
        client.addServer(host, int(port))
        client.waitForServer(timeout=5)
        connection = client.active_connections[0]
        try:
            connection.sendAdminRequest(request, timeout=10)
        except gear.TimeoutError:
            sys.stderr.write("timeout waiting for the %s response\n" % command)
            return 3
        sys.stdout.write(request.response.decode("utf-8", "replace"))
        sys.stdout.flush()
        return 0
    finally:
        client.shutdown()


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    # gear runs background threads; do not let them delay the exit.
    os._exit(rc)
