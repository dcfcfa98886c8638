<?php
// Gearman client written with pecl/gearman (GearmanClient).
//
// usage: php php_client.php HOST PORT MODE ARGS...
//   normal     FUNCTION PAYLOAD  doNormal; prints "result=<value>" and "rc=<returnCode>"
//   background FUNCTION PAYLOAD  doBackground; prints "handle=<handle>" and "rc=<returnCode>"
//   tasks      FUNCTION PAYLOAD  addTask + runTasks with every callback set; prints one
//                                line per callback fired (see below), then
//                                "run_tasks=<true|false>" and "rc=<returnCode>"
//   status     HANDLE            jobStatus; prints "status=<json of the 4-element array>"
//                                and "rc=<returnCode>"
//   bgstatus   FUNCTION PAYLOAD  doBackground, then jobStatus on that handle from the
//                                same client; prints "handle=", "status=", "rc="
// Callback lines (tasks): "created <handle>", "data <data>", "warning <data>",
// "status <numerator>/<denominator>", "complete <data>", "fail", "exception <data>".
// The client gives up after 15 s (setTimeout), so a lost job gives a non-zero rc.

if ($argc < 5) {
    fwrite(STDERR, "usage: php_client.php HOST PORT MODE ARGS...\n");
    exit(2);
}
$host = $argv[1];
$port = (int)$argv[2];
$mode = $argv[3];

$client = new GearmanClient();
$client->addServer($host, $port);
$client->setTimeout(15000);

function bool_str($b) {
    return $b ? "true" : "false";
}

switch ($mode) {
    case 'normal':
        $result = $client->doNormal($argv[4], $argv[5]);
        echo "result=", $result, "\n";
        echo "rc=", $client->returnCode(), "\n";
        break;
    case 'background':
        $handle = $client->doBackground($argv[4], $argv[5]);
        echo "handle=", $handle, "\n";
        echo "rc=", $client->returnCode(), "\n";
        break;
    case 'bgstatus':
        $handle = $client->doBackground($argv[4], $argv[5]);
        echo "handle=", $handle, "\n";
        echo "status=", json_encode($client->jobStatus($handle)), "\n";
        echo "rc=", $client->returnCode(), "\n";
        break;
    case 'status':
        echo "status=", json_encode($client->jobStatus($argv[4])), "\n";
        echo "rc=", $client->returnCode(), "\n";
        break;
    case 'tasks':
        $client->setCreatedCallback(function (GearmanTask $t) {
            echo "created ", $t->jobHandle(), "\n";
        });
        $client->setDataCallback(function (GearmanTask $t) {
            echo "data ", $t->data(), "\n";
        });
        $client->setWarningCallback(function (GearmanTask $t) {
            echo "warning ", $t->data(), "\n";
        });
        $client->setStatusCallback(function (GearmanTask $t) {
            echo "status ", $t->taskNumerator(), "/", $t->taskDenominator(), "\n";
        });
        $client->setCompleteCallback(function (GearmanTask $t) {
            echo "complete ", $t->data(), "\n";
        });
        $client->setFailCallback(function (GearmanTask $t) {
            echo "fail\n";
        });
        $client->setExceptionCallback(function (GearmanTask $t) {
            echo "exception ", $t->data(), "\n";
        });
        $task = $client->addTask($argv[4], $argv[5]);
        if ($task === false) {
            echo "add_task=false\n";
        }
        $ok = $client->runTasks();
        echo "run_tasks=", bool_str($ok), "\n";
        echo "rc=", $client->returnCode(), "\n";
        break;
    default:
        fwrite(STDERR, "unknown mode $mode\n");
        exit(2);
}
exit(0);
