#!/usr/bin/env python3
"""Where Debezium's time goes in a drain, from a JFR recording of the bench runner.

Record (the engine alone, so Kafka is out of the picture):
  OUTBOX_BENCH_DEBEZIUM_JAVA_OPTS="-XX:StartFlightRecording=filename=/tmp/engine.jfr,settings=profile" \
    target/release/outbox-bench --relays debezium-engine --scenarios backlog-batched
then: docs/bench/debezium-diagnosis/jfr-breakdown.py /tmp/engine.jfr

Prints, for the streaming part of the drain (samples from --skip seconds after the first
streamed record on), the share of CPU samples per thread and, for the connector's streaming
thread, what the samples were doing. Needs the JDK's `jfr` tool.
"""
import argparse
import collections
import re
import subprocess

STREAMING_THREAD = "change-event-source-coordinator"
# First match wins, so the more specific work comes first.
CATEGORIES = [
    ("timestamptz parsing and formatting (created_at)",
     ["convertTimestampWithZone", "timestampWithTimeZoneToOffsetDateTime", "ZonedTimestamp"]),
    ("source info struct (LSN, txId, ts, … for every record)",
     ["AbstractSourceInfo.struct", "SourceInfo.sequence"]),
    ("other column values", ["PostgresChangeRecordEmitter.columnValues", "TableSchema.valueFromColumnData"]),
    ("handing records to the engine's queue", ["ChangeEventQueue"]),
    ("pgoutput decoding and the record envelope", ["PgOutputMessageDecoder"]),
    ("reading the replication stream", ["readPending", "org.postgresql"]),
]


def seconds(ts):
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def events(recording, kind, *options):
    """The text of every `kind` event in the recording, one string each."""
    text = subprocess.run(["jfr", "print", *options, "--events", kind, recording],
                          check=True, capture_output=True, text=True).stdout
    return text.split(kind)[1:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("recording")
    parser.add_argument("--skip", type=float, default=10.0,
                        help="seconds after the first streaming sample to leave out (JIT warm-up)")
    args = parser.parse_args()
    samples = []
    for event in events(args.recording, "jdk.ExecutionSample", "--stack-depth", "80"):
        ts = re.search(r"startTime = (\S+)", event)
        thread = re.search(r'sampledThread = "([^"]*)"', event)
        if not ts or not thread:
            continue
        frames = re.findall(r"^\s+([\w.$<>]+)\(", event, re.M)
        samples.append((seconds(ts.group(1)), thread.group(1), frames))
    streaming = [t for t, thread, _ in samples if STREAMING_THREAD in thread]
    if not streaming:
        raise SystemExit("no samples of the connector's streaming thread")
    lo, hi = min(streaming) + args.skip, max(streaming)
    window = [s for s in samples if lo <= s[0] <= hi]
    print(f"{len(window)} samples in {hi - lo:.1f} s of streaming")
    threads = collections.Counter(thread for _, thread, _ in window)
    for thread, n in threads.most_common(6):
        print(f"  {100 * n / len(window):5.1f}%  {thread}")
    busy = []
    for event in events(args.recording, "jdk.ThreadCPULoad"):
        ts = re.search(r"startTime = (\S+)", event)
        thread = re.search(r'eventThread = "([^"]*)"', event)
        if ts and thread and STREAMING_THREAD in thread.group(1) and lo <= seconds(ts.group(1)) <= hi:
            user = float(re.search(r"user = ([\d.]+)%", event).group(1))
            system = float(re.search(r"system = ([\d.]+)%", event).group(1))
            busy.append(user + system)
    if busy:
        print(f"streaming thread's CPU: {sum(busy) / len(busy):.1f}% of the machine "
              f"({len(busy)} readings; on 2 cores, 50% is one core)")
    whole = collections.defaultdict(list)
    for event in events(args.recording, "jdk.CPULoad"):
        ts = re.search(r"startTime = (\S+)", event)
        if ts and lo <= seconds(ts.group(1)) <= hi:
            for key in ("jvmUser", "jvmSystem", "machineTotal"):
                whole[key].append(float(re.search(key + r" = ([\d.]+)%", event).group(1)))
    if whole:
        mean = {k: sum(v) / len(v) for k, v in whole.items()}
        print(f"JVM: {mean['jvmUser'] + mean['jvmSystem']:.1f}% of the machine, the machine "
              f"{mean['machineTotal']:.1f}% busy ({len(whole['machineTotal'])} readings)")
    mine = [frames for _, thread, frames in window if STREAMING_THREAD in thread]
    print(f"streaming thread, {len(mine)} samples:")
    kinds = collections.Counter()
    for frames in mine:
        joined = " ".join(frames)
        kinds[next((name for name, keys in CATEGORIES if any(k in joined for k in keys)), "other")] += 1
    for name, n in kinds.most_common():
        print(f"  {100 * n / len(mine):5.1f}%  {name}")


if __name__ == "__main__":
    main()
