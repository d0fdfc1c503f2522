# Scheduling stalls: how late a 1 ms sleep wakes, over N seconds (the machine's own jitter).
import sys, time
n = float(sys.argv[1]) if len(sys.argv) > 1 else 30
late = []
end = time.monotonic() + n
while time.monotonic() < end:
    t = time.monotonic()
    time.sleep(0.001)
    late.append((time.monotonic() - t - 0.001) * 1000)
late.sort()
q = lambda p: late[min(len(late) - 1, int(p * len(late)))]
print(f"wakes {len(late)}, late by ms: p50 {q(0.5):.2f} p99 {q(0.99):.2f} p99.9 {q(0.999):.2f} max {late[-1]:.1f}; over 10 ms: {sum(1 for x in late if x > 10)}, over 50 ms: {sum(1 for x in late if x > 50)}")
