#!/usr/bin/perl
# Gearman client written with Gearman::Client / Gearman::Taskset (CPAN Gearman 2.x).
#
# usage: perl perl_client.pl HOST PORT MODE FUNCTION PAYLOAD
#   normal      add_task to a Gearman::Taskset and wait (at most 15 s); one line per
#               callback fired: "data <data>", "warning <data>",
#               "status <numerator>/<denominator>", "complete <data>", "fail",
#               "exception <data>"; then "result=<complete data>" (empty if none)
#   do_task     Gearman::Client::do_task; prints "result=<data>" or "result=undef"
#   background  dispatch_background; prints "handle=<handle>" (or "handle=undef")
use strict;
use warnings;
use Gearman::Client;
use Gearman::Taskset;

$| = 1;
die "usage: perl_client.pl HOST PORT MODE FUNCTION PAYLOAD\n" unless @ARGV == 5;
my ($host, $port, $mode, $function, $payload) = @ARGV;

# Hard stop so a hang becomes a failure.
$SIG{ALRM} = sub { print "timeout\n"; exit 3 };
alarm 18;

my $client = Gearman::Client->new(job_servers => ["$host:$port"]);

if ($mode eq 'normal') {
    my $ts     = $client->new_task_set;
    my $result;
    my $handle = $ts->add_task(
        $function, $payload,
        {
            on_data      => sub { print "data ${$_[0]}\n" },
            on_warning   => sub { print "warning ", (ref $_[0] ? ${$_[0]} : $_[0]), "\n" },
            on_status    => sub { print "status $_[0]/$_[1]\n" },
            on_complete  => sub { $result = ${$_[0]}; print "complete $result\n" },
            on_fail      => sub { print "fail\n" },
            on_exception => sub { print "exception ", (ref $_[0] ? ${$_[0]} : $_[0]), "\n" },
        }
    );
    $ts->wait(timeout => 15);
    print "result=", (defined $result ? $result : ""), "\n";
}
elsif ($mode eq 'do_task') {
    my $ref = $client->do_task($function, $payload, { timeout => 15 });
    print "result=", (defined $ref ? $$ref : "undef"), "\n";
}
elsif ($mode eq 'background') {
    my $handle = $client->dispatch_background($function, $payload);
    print "handle=", (defined $handle ? $handle : "undef"), "\n";
}
else {
    die "unknown mode $mode\n";
}
exit 0;
