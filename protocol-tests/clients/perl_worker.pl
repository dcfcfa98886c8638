#!/usr/bin/perl
# Gearman worker written with Gearman::Worker (CPAN Gearman 2.x).
#
# usage: perl perl_worker.pl HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]
#
# Registers FUNCTION, runs COUNT jobs, then exits 0; exits 3 if TIMEOUT_SECS pass first.
# MODE:
#   reverse  complete with the reversed payload
#   chunks   WORK_STATUS 1/4, WORK_DATA "chunk1:", WORK_WARNING "warn:<payload>",
#            WORK_DATA "chunk2:", WORK_STATUS 4/4, complete with "final:<payload>"
#   fail     WORK_FAIL (the handler returns undef)
# Note: WORK_STATUS is sent with Gearman::Job::set_status, because
# Gearman::Worker::send_work_status (2.004.015) drops the denominator and sends a
# WORK_STATUS with one NUL too few.
# If OUTFILE is given, "started <payload>" / "done <payload>" lines are appended to it.
# stdout: "ready", then "job <handle> <payload>" per job, then "exit <jobs done>".
use strict;
use warnings;
use Gearman::Worker;
use Fcntl qw(:flock);

$| = 1;
die "usage: perl_worker.pl HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]\n"
    unless @ARGV == 6 || @ARGV == 7;
my ($host, $port, $function, $mode, $count, $timeout, $outfile) = @ARGV;

$SIG{ALRM} = sub { print "timeout\n"; exit 3 };
alarm $timeout;

sub note {
    my ($line) = @_;
    return unless defined $outfile;
    open(my $fh, '>>', $outfile) or die "open $outfile: $!";
    flock($fh, LOCK_EX);
    print $fh "$line\n";
    close $fh;
}

my $done   = 0;
my $worker = Gearman::Worker->new(job_servers => ["$host:$port"]);
my $worker_ref = $worker;
$worker->register_function(
    $function => sub {
        my $job     = shift;
        my $payload = $job->arg;
        print "job ", $job->handle, " $payload\n";
        note("started $payload");
        my $ret;
        if ($mode eq 'reverse') {
            $ret = scalar reverse $payload;
        }
        elsif ($mode eq 'chunks') {
            $job->set_status(1, 4);
            $worker_ref->send_work_data($job, "chunk1:");
            $worker_ref->send_work_warning($job, "warn:$payload");
            $worker_ref->send_work_data($job, "chunk2:");
            $job->set_status(4, 4);
            $ret = "final:$payload";
        }
        elsif ($mode eq 'fail') {
            $ret = undef;
        }
        else {
            die "unknown mode $mode\n";
        }
        $done++;
        note("done $payload");
        return $ret;
    }
);
print "ready\n";
$worker->work(stop_if => sub { $done >= $count });
print "exit $done\n";
exit 0;
