#!/usr/bin/env python3
"""seasonal-lookalike.py OUTDIR INTERVAL_S SEED

A look-alike of ../shared/data/seasonal at any interval: the same four
series (web requests, a nightly job's CPU, a latency, a weekday queue) over
21 days from Monday 2025-03-03, with the same kinds of anomalies at about
the same times, written from that folder's README and statistics (its
generator is not ours). The folder only holds 5-minute data; this checks
that what works there works at 10 s, 1 min, 15 min and 1 h too:

  python3 scripts/seasonal-lookalike.py /tmp/sg/60-1 60 1
  go run ./cmd/iforest-eval scenario -dir /tmp/sg/60-1 -skip 168h
"""
import sys, os, json, math, random, datetime as dt

out, step, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
t0 = dt.datetime(2025, 3, 3)
n = 21 * 86400 // step
os.makedirs(out, exist_ok=True)

def hours(t):
    return t.hour + t.minute / 60 + t.second / 3600

def within(t, a, b):
    return a <= t < b

def T(s):
    return dt.datetime.strptime(s, "%Y-%m-%d %H:%M")

# Event times, moved by up to 30 minutes with the seed.
def jit(s):
    return T(s) + dt.timedelta(minutes=5 * rnd.randint(0, 6))

def bump(h, peak=14, p=1.3):
    return (0.5 - 0.5 * math.cos(2 * math.pi * (h - (peak - 12)) / 24)) ** p

series = {}
# web_requests: daily cycle, weekends lower, multiplicative noise.
ns, ds, sp = jit("2025-03-14 04:00"), jit("2025-03-20 13:00"), jit("2025-03-22 16:55")
def web(t):
    h = hours(t)
    base = 150 + 1140 * bump(h)
    if t.weekday() >= 5:
        base *= 0.69
    kind = ""
    if within(t, ns, ns + dt.timedelta(minutes=60)):
        base, kind = 850, "night_surge"
    elif within(t, ds, ds + dt.timedelta(minutes=45)):
        base, kind = 135, "daytime_drop"
    elif within(t, sp, sp + dt.timedelta(minutes=10)):
        base, kind = 2500, "spike"
    return base * (1 + rnd.gauss(0, 0.04)), kind
series["web_requests"] = web

job_h = 1.0
wj, ov = jit("2025-03-13 11:00"), T("2025-03-20 01:30")
def job(t):
    h = hours(t)
    base = 29 + 5.4 * bump(h)
    kind = ""
    if job_h <= h < job_h + 0.5:
        base = 87
    if within(t, wj, wj + dt.timedelta(minutes=30)):
        base, kind = 87, "job_at_wrong_time"
    elif within(t, ov, ov + dt.timedelta(minutes=120)):
        base, kind = 87, "job_overrun"
    sd = 2.0 if base < 50 else 2.3
    return base + rnd.gauss(0, sd), kind
series["nightly_job_cpu"] = job

ls, lsp = jit("2025-03-11 07:50"), jit("2025-03-22 17:15")
def lat(t):
    h = hours(t)
    base = 142 + 38 * bump(h)
    kind = ""
    if within(t, ls, ls + dt.timedelta(hours=12)):
        base *= 1.45
        if t < ls + dt.timedelta(hours=2):
            kind = "level_shift"
    if within(t, lsp, lsp + dt.timedelta(minutes=15)):
        base, kind = 600, "spike"
    return base * (1 + rnd.gauss(0, 0.055)), kind
series["latency_ms"] = lat

sat, nsu = T("2025-03-15 09:00"), jit("2025-03-13 03:00")
def queue(t):
    h = hours(t)
    busy = t.weekday() < 5 and 8 <= h < 18
    kind = ""
    if within(t, sat, sat + dt.timedelta(hours=3)):
        busy = True
        if t < sat + dt.timedelta(hours=1):
            kind = "weekend_weekday_load"
    if within(t, nsu, nsu + dt.timedelta(minutes=30)):
        return 190 + rnd.gauss(0, 15), "night_surge"
    if busy:
        return 245 + rnd.gauss(0, 20), kind
    return max(0.5, 11.5 + rnd.gauss(0, 2.3)), kind
series["queue_depth"] = queue

windows = {}
for name, f in series.items():
    rows, spans = [], {}
    for i in range(n):
        t = t0 + dt.timedelta(seconds=i * step)
        v, kind = f(t)
        ts = t.strftime("%Y-%m-%d %H:%M:%S")
        rows.append("%s,%.6g,%d,%s" % (ts, v, 1 if kind else 0, kind))
        if kind:
            if kind not in spans:
                spans[kind] = [ts, ts]
            spans[kind][1] = ts
    with open(os.path.join(out, name + ".csv"), "w") as fh:
        fh.write("timestamp,value,label,kind\n" + "\n".join(rows) + "\n")
    windows[name + ".csv"] = [[a, b, k] for k, (a, b) in spans.items()]
json.dump(windows, open(os.path.join(out, "windows.json"), "w"), indent=1)
