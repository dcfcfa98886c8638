<?php
// Gearman worker written with pecl/gearman (GearmanWorker).
//
// usage: php php_worker.php HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]
//
// Registers FUNCTION, runs COUNT jobs, then exits 0. Exits 3 if TIMEOUT_SECS
// pass first. Each job's behaviour is chosen by MODE:
//   reverse    complete with the reversed payload
//   chunks     WORK_STATUS 1/4, WORK_DATA "chunk1:", WORK_WARNING "warn:<payload>",
//              WORK_DATA "chunk2:", WORK_STATUS 4/4, then complete with "final:<payload>"
//   fail       WORK_FAIL
//   exception  WORK_EXCEPTION "boom:<payload>"
//   hold       WORK_STATUS 3/7, then wait until OUTFILE.release exists
//              (at most TIMEOUT_SECS), then complete with the reversed payload
// If OUTFILE is given, "started <payload>" is appended when a job starts and
// "done <payload>" when the worker has finished handling it.
// stdout: "ready" once the function is registered, "job <handle> <payload>" per job,
// "exit <jobs done>" at the end.

if ($argc < 7) {
    fwrite(STDERR, "usage: php_worker.php HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]\n");
    exit(2);
}
[$_, $host, $port, $function, $mode, $count, $timeout] = $argv;
$count = (int)$count;
$timeout = (float)$timeout;
$outfile = $argc > 7 ? $argv[7] : null;
$deadline = microtime(true) + $timeout;

function note($outfile, $line) {
    if ($outfile !== null) {
        file_put_contents($outfile, $line . "\n", FILE_APPEND | LOCK_EX);
    }
}

$done = 0;
$worker = new GearmanWorker();
$worker->addServer($host, (int)$port);
$worker->setTimeout(200); // ms; lets us check the deadline between jobs

$worker->addFunction($function, function (GearmanJob $job) use ($mode, $outfile, $deadline, &$done) {
    $payload = $job->workload();
    echo "job ", $job->handle(), " ", $payload, "\n";
    note($outfile, "started " . $payload);
    $result = null;
    switch ($mode) {
        case 'reverse':
            $result = strrev($payload);
            break;
        case 'chunks':
            $job->sendStatus(1, 4);
            $job->sendData("chunk1:");
            $job->sendWarning("warn:" . $payload);
            $job->sendData("chunk2:");
            $job->sendStatus(4, 4);
            $result = "final:" . $payload;
            break;
        case 'fail':
            $job->sendFail();
            break;
        case 'exception':
            $job->sendException("boom:" . $payload);
            break;
        case 'hold':
            $job->sendStatus(3, 7);
            $release = $outfile . ".release";
            while (!file_exists($release) && microtime(true) < $deadline) {
                usleep(20000);
            }
            $result = strrev($payload);
            break;
        default:
            fwrite(STDERR, "unknown mode $mode\n");
            exit(2);
    }
    $done++;
    note($outfile, "done " . $payload);
    if ($result === null) {
        return null;
    }
    return $result;
});
echo "ready\n";

while ($done < $count) {
    if (microtime(true) >= $deadline) {
        echo "timeout after $done jobs\n";
        exit(3);
    }
    @$worker->work();
    $rc = $worker->returnCode();
    if ($rc != GEARMAN_SUCCESS && $rc != GEARMAN_TIMEOUT && $rc != GEARMAN_IO_WAIT
        && $rc != GEARMAN_NO_JOBS && $rc != GEARMAN_NO_ACTIVE_FDS) {
        // lost server etc.: keep trying until the deadline, but do not spin
        usleep(50000);
    }
}
echo "exit $done\n";
exit(0);
