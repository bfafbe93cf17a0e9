# Allocation-heavy Perl workload for the LD_PRELOAD tests.
#
# Debian's perl uses the system malloc (usemymalloc=n) for every scalar,
# array, hash and op tree, and its ithreads copy the whole interpreter
# into each new thread and free it in that thread at its end: a producer-
# consumer pattern with cross-thread frees that no C test reproduces as
# faithfully.  Everything printed is a function of the input alone (sorted
# keys, fixed seeds, results joined in thread order), so a run on any
# allocator prints the same.  Usage: perl workload.pl [SCALE]
use strict;
use warnings;
use threads;
use Thread::Queue;
use Digest::MD5 qw(md5_hex);

my $SCALE = @ARGV ? $ARGV[0] : 1;

# A fixed xorshift, not perl's rand: the same sequence on every perl.
sub rng {
  my $s = shift;
  return sub {
    $s ^= ($s << 13) & 0xffffffff;
    $s ^= $s >> 17;
    $s ^= ($s << 5) & 0xffffffff;
    return $s;
  };
}

sub section { print "$_[0]: $_[1]\n" }

sub word {
  my ($r, $lo, $hi) = @_;
  my $n = $lo + $r->() % ($hi - $lo + 1);
  return join '', map { chr(97 + $r->() % 26) } 1 .. $n;
}

# Hashes that grow, shrink by deletion and grow again: rehashing frees and
# reallocates the bucket arrays, deleted entries free their values.
sub hashes {
  my $r = rng(12345);
  my %h;
  for my $i (1 .. 40000 * $SCALE) {
    $h{ word($r, 3, 10) . $i % 977 } = [$i, word($r, 0, 40)];
  }
  my $n = keys %h;
  delete $h{$_} for grep { length($_) % 3 == 0 } keys %h;
  my $left = keys %h;
  $h{"again$_"} = { n => $_, s => 'x' x ($_ % 300) } for 1 .. 20000 * $SCALE;
  my $sum = 0;
  $sum += ref $h{$_} eq 'HASH' ? $h{$_}{n} : $h{$_}[0] for keys %h;
  section('hashes', "$n $left " . scalar(keys %h) . " $sum");
}

# Arrays: push/shift/splice and sorts of records, which copy and free
# lists of scalars.
sub arrays {
  my $r = rng(777);
  my @a = map { [word($r, 1, 12), $r->() % 100000] } 1 .. 50000 * $SCALE;
  my @by_name = sort { $a->[0] cmp $b->[0] or $a->[1] <=> $b->[1] } @a;
  my @by_num = sort { $b->[1] <=> $a->[1] or $a->[0] cmp $b->[0] } @a;
  splice(@a, $_ * 7 % @a, 3) for 1 .. 5000;
  push @a, [$_, $_] for 1 .. 10000;
  shift @a for 1 .. 20000;
  section('arrays', join ' ', scalar(@a), $by_name[0][0], $by_name[-1][0],
    $by_num[0][1], md5_hex(join ',', map { "@$_" } @by_num[0 .. 999]));
}

# Strings: growing buffers, substr, sprintf, split/join, regexes with
# captures and global substitutions.
sub strings {
  my $r = rng(4242);
  my $text = '';
  $text .= sprintf("%s=%d;%s\n", word($r, 2, 8), $r->() % 1000, word($r, 0, 30))
    for 1 .. 60000 * $SCALE;
  my %count;
  $count{$1}++ while $text =~ /^([a-z]{2})/mg;
  (my $up = $text) =~ s/([aeiou]+)/\U$1/g;
  my @lines = split /\n/, $up;
  my $rev = join "\n", reverse map { scalar reverse $_ } @lines;
  my $pieces = 0;
  for (my $i = 0; $i + 64 <= length $text; $i += 997) {
    $pieces += length substr($text, $i, 64) =~ tr/a-m//;
  }
  section('strings', join ' ', length $text, scalar(keys %count),
    md5_hex($up), md5_hex($rev), $pieces);
}

# Nested references and closures, dropped and rebuilt: reference counting
# frees whole trees at once.
sub trees {
  my $r = rng(99);
  my $total = 0;
  for my $round (1 .. 20 * $SCALE) {
    my @nodes;
    for my $i (0 .. 3000) {
      my $node = { id => $i, kids => [], name => word($r, 4, 16) };
      push @{ $nodes[$r->() % @nodes]{kids} }, $node if @nodes;
      push @nodes, $node;
    }
    my $walk;
    $walk = sub { my $n = shift; my $s = 1; $s += $walk->($_) for @{ $n->{kids} }; $s };
    $total += $walk->($nodes[0]);
    undef $walk;
  }
  section('trees', $total);
}

# Threads: each clones the interpreter (all of the above's code and data
# structures), builds its own hash and returns a digest; a queue carries
# strings from producer threads to a consumer thread, so blocks made in one
# thread are freed in another.
sub workers {
  my @t = map {
    my $seed = $_;
    threads->create(sub {
      my $r = rng(1000 + $seed);
      my %h;
      $h{ word($r, 2, 9) } .= word($r, 1, 50) for 1 .. 20000 * $SCALE;
      return md5_hex(join ';', map { "$_=$h{$_}" } sort keys %h);
    });
  } 1 .. 4;
  my @digests = map { $_->join } @t;
  my $q = Thread::Queue->new;
  my $consumer = threads->create(sub {
    my ($n, $len) = (0, 0);
    while (defined(my $item = $q->dequeue)) { $n++; $len += length $item->[1] }
    return "$n $len";
  });
  my @producers = map {
    my $seed = $_;
    threads->create(sub {
      my $r = rng(50 + $seed);
      $q->enqueue([$seed, word($r, 2, 12) x (1 + $r->() % 150)])
        for 1 .. 5000 * $SCALE;
      return 1;
    });
  } 1 .. 3;
  $_->join for @producers;
  $q->end;
  section('workers', join ' ', @digests, $consumer->join);
}

hashes();
arrays();
strings();
trees();
workers();
section('done', 'ok');
