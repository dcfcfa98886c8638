<?php
// Gearman worker written with pecl/gearman (GearmanWorker) that registers its
// function with a timeout (CAN_DO_TIMEOUT), for the peer aggregation tests.
//
// usage: php php_timeout_worker.php HOST PORT FUNCTION TIMEOUT SLEEP_MS COUNT DEADLINE_SECS [OUTFILE]
//
// Registers FUNCTION with GearmanWorker::addFunction($name, $cb, null, TIMEOUT)
// (libgearman sends CAN_DO_TIMEOUT with TIMEOUT as given; gearmand and gearboxd
// read it as milliseconds, raised to at least 1000). Each job sleeps SLEEP_MS
// milliseconds, then completes with the reversed payload. Runs COUNT jobs, then
// exits 0; exits 3 once DEADLINE_SECS have passed.
// stdout: "ready", then "job <handle> <payload>" when a job starts and
// "done <payload>" when it has been completed, then "exit <jobs done>".
// If OUTFILE is given, "started <payload>" / "done <payload>" are appended to it.

if ($argc < 8) {
    fwrite(STDERR, "usage: php_timeout_worker.php HOST PORT FUNCTION TIMEOUT SLEEP_MS COUNT DEADLINE_SECS [OUTFILE]\n");
    exit(2);
}
[$_, $host, $port, $function, $timeout, $sleep_ms, $count, $deadline_secs] = $argv;
$outfile = $argc > 8 ? $argv[8] : null;
$count = (int)$count;
$sleep_ms = (int)$sleep_ms;
$deadline = microtime(true) + (float)$deadline_secs;

function note($outfile, $line) {
    if ($outfile !== null) {
        file_put_contents($outfile, $line . "\n", FILE_APPEND | LOCK_EX);
    }
}

$done = 0;
$worker = new GearmanWorker();
$worker->addServer($host, (int)$port);
$worker->setTimeout(200); // ms; lets us check the deadline between jobs

$worker->addFunction($function, function (GearmanJob $job) use ($outfile, $sleep_ms, &$done) {
    $payload = $job->workload();
    echo "job ", $job->handle(), " ", $payload, "\n";
    note($outfile, "started " . $payload);
    usleep($sleep_ms * 1000);
    $done++;
    echo "done ", $payload, "\n";
    note($outfile, "done " . $payload);
    return strrev($payload);
}, null, (int)$timeout);
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
        usleep(50000);
    }
}
echo "exit $done\n";
exit(0);
