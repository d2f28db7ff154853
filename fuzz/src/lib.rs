//! What the ingest fuzz targets share: the fixed decode limits, a global allocator that measures
//! the largest single allocation made while a decoder runs, and the checks every outcome must
//! pass (see `README.md`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ioc_ingest::DecodeLimits;
use ioc_schemas::{District, Reading, RejectCode, Rejection, ValidationLimits};

/// The payload limit the targets decode with (the ingest default).
pub const MAX_PAYLOAD_BYTES: usize = 65_536;
/// The receiver's clock: 2026-11-28T08:00:00+07:00, fixed so every run judges alike.
pub const NOW_MS: u64 = 1_795_827_600_000;

/// The limits every decode call gets.
pub fn limits() -> DecodeLimits {
    DecodeLimits {
        max_payload_bytes: MAX_PAYLOAD_BYTES,
        now_ms: NOW_MS,
        validation: ValidationLimits::default(),
    }
}

/// The largest single allocation a decode call may make.
///
/// An oversized payload is refused before anything is copied: only the short
/// `payload is N bytes, the limit is M` detail is allocated (64 bytes measured), so the bound is
/// [`OVERSIZED_ALLOC_BOUND`].
///
/// Otherwise the bound is eight times the payload limit: serde_json's error for a string of the
/// wrong type quotes it with `{:?}`, up to 6 bytes per input byte, rounded up by `String`'s
/// doubling growth; this happens inside serde_json, before ingest can cut the detail (which it
/// then does, to 1 KiB). Without it, in-limit input stays within twice the payload limit;
/// probing the bound found two reasons, both amortised doubling of a buffer that holds at most
/// one payload's worth of text:
/// - serde_json copies a string with escapes into its scratch `Vec<u8>`, which grows by
///   doubling: a 40,000-byte `unit` ending in `\n` reserves 80,024 bytes;
/// - a rejection's detail may quote the offending value (an unknown `kind`, field name or
///   metric) and `format!` grows its `String` by doubling: a 65,520-byte payload whose `kind` is
///   65,400 bytes makes a 130,742-byte detail buffer.
///
/// The topic, the Kafka key and the district header are outside the payload limit (the
/// transports bound them) and an MQTT detail quotes the topic, so twice their length is added
/// (a Kafka key or header is quoted by its first 128 bytes only).
pub fn alloc_bound(payload_len: usize, side_len: usize) -> usize {
    if payload_len > MAX_PAYLOAD_BYTES {
        OVERSIZED_ALLOC_BOUND
    } else {
        8 * MAX_PAYLOAD_BYTES + 2 * side_len
    }
}

/// The largest single allocation allowed when the payload is over the limit.
pub const OVERSIZED_ALLOC_BOUND: usize = 256;

/// A [`System`] allocator that, while [`measure`] runs, records the largest single allocation
/// and the stack of the first one over the threshold.
pub struct TrackingAlloc;

static TRACKING: AtomicBool = AtomicBool::new(false);
static IN_HOOK: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static THRESHOLD: AtomicUsize = AtomicUsize::new(usize::MAX);
static OVER_STACK: Mutex<Option<String>> = Mutex::new(None);

impl TrackingAlloc {
    fn record(size: usize) {
        // The hook's own allocations (capturing a stack) are not the decoder's.
        if !TRACKING.load(Ordering::Relaxed) || IN_HOOK.load(Ordering::Relaxed) {
            return;
        }
        LARGEST.fetch_max(size, Ordering::Relaxed);
        // The first allocation over the bound: keep its stack for the failure message.
        // Capturing allocates; `IN_HOOK` makes those nested calls plain `System` calls.
        if size > THRESHOLD.load(Ordering::Relaxed) && !IN_HOOK.swap(true, Ordering::Acquire) {
            if let Ok(mut slot) = OVER_STACK.lock() {
                if slot.is_none() {
                    let stack = Backtrace::force_capture();
                    *slot = Some(format!("allocation of {size} bytes at:\n{stack}"));
                }
            }
            IN_HOOK.store(false, Ordering::Release);
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping only touches atomics
// and, on the rare allocation over the threshold, a mutex and a backtrace whose own allocations
// go straight to `System` (guarded by `IN_HOOK`).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

/// What [`measure`] saw.
#[derive(Debug)]
pub struct Allocations {
    /// The largest single allocation (or reallocation's new size), bytes.
    pub largest: usize,
    /// The stack of the first allocation over the threshold, if any.
    pub over_stack: Option<String>,
}

/// Runs `f` and reports its largest single allocation, keeping the stack of the first
/// allocation larger than `threshold`. Not reentrant; libFuzzer runs one input at a time.
pub fn measure<R>(threshold: usize, f: impl FnOnce() -> R) -> (R, Allocations) {
    if let Ok(mut slot) = OVER_STACK.lock() {
        *slot = None;
    }
    LARGEST.store(0, Ordering::Relaxed);
    THRESHOLD.store(threshold, Ordering::Relaxed);
    TRACKING.store(true, Ordering::SeqCst);
    let out = f();
    TRACKING.store(false, Ordering::SeqCst);
    let over_stack = OVER_STACK.lock().ok().and_then(|mut s| s.take());
    let seen = Allocations {
        largest: LARGEST.load(Ordering::Relaxed),
        over_stack,
    };
    (out, seen)
}

/// Whether `IOC_FUZZ_TRACE` is set: then every input's outcome is printed to stderr (for
/// checking seeds with `-runs=0`, never in a fuzzing run: it is slow).
pub fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("IOC_FUZZ_TRACE").is_some())
}

/// One decode call's outcome, as the checks need it.
pub struct Outcome<'a> {
    /// What the decoder returned.
    pub result: &'a Result<(Reading, District), Rejection>,
    /// The payload's length.
    pub payload_len: usize,
    /// The length of the other untrusted inputs (topic, key, header).
    pub side_len: usize,
    /// What the allocator saw during the call.
    pub allocations: Allocations,
}

/// The checks of every outcome. `redecode` decodes another payload with the same topic (and
/// key and header); it is called with the accepted reading's JSON.
pub fn check(
    outcome: Outcome<'_>,
    redecode: impl FnOnce(&[u8]) -> Result<(Reading, District), Rejection>,
) {
    let Outcome {
        result,
        payload_len,
        side_len,
        allocations,
    } = outcome;
    let limits = limits();
    let bound = alloc_bound(payload_len, side_len);
    if tracing() {
        let verdict = match result {
            Ok((r, d)) => format!("ok {} {} {d}", r.kind(), r.device_id),
            Err(e) => format!("{}: {:.120}", e.code, e.detail),
        };
        eprintln!(
            "ioc-fuzz: payload {payload_len} B, largest allocation {} B (bound {bound}): {verdict}",
            allocations.largest
        );
    }
    assert!(
        allocations.largest <= bound,
        "the decoder made a {} byte allocation, over the bound of {bound} (payload {payload_len} \
         bytes, topic/key/header {side_len} bytes)\n{}",
        allocations.largest,
        allocations.over_stack.as_deref().unwrap_or("(no stack)")
    );
    if payload_len > limits.max_payload_bytes {
        let code = result.as_ref().err().map(|e| e.code);
        assert_eq!(
            code,
            Some(RejectCode::PayloadTooLarge),
            "a {payload_len} byte payload must be rejected as too large"
        );
    }
    match result {
        Ok((reading, district)) => {
            if let Err(e) = reading.validate(limits.now_ms, &limits.validation) {
                panic!("an accepted reading fails validation: {e}\n{reading:?}");
            }
            let json = match serde_json::to_vec(reading) {
                Ok(json) => json,
                Err(e) => panic!("an accepted reading does not serialise: {e}\n{reading:?}"),
            };
            let again = redecode(&json);
            if json.len() > limits.max_payload_bytes {
                // Re-encoding may lengthen a payload near the limit (`5` becomes `5.0`, an
                // RFC 3339 time becomes epoch ms): then only the size may be the objection.
                let code = again.as_ref().err().map(|e| e.code);
                assert_eq!(code, Some(RejectCode::PayloadTooLarge));
                return;
            }
            match again {
                Ok((r, d)) => {
                    let same =
                        d == *district && (r == *reading || equal_but_float_parsing(reading, &r));
                    assert!(
                        same,
                        "the re-encoded reading decodes differently: {}\nfirst:  {reading:?} \
                         in {district}\nsecond: {r:?} in {d}",
                        String::from_utf8_lossy(&json)
                    );
                }
                Err(e) => panic!(
                    "the re-encoded reading is rejected: {e}\n{}",
                    String::from_utf8_lossy(&json)
                ),
            }
        }
        Err(e) => {
            assert!(
                !e.detail.is_empty(),
                "a {} rejection without detail",
                e.code
            );
            if payload_len <= limits.max_payload_bytes {
                assert_ne!(
                    e.code,
                    RejectCode::PayloadTooLarge,
                    "a {payload_len} byte payload is within the limit: {}",
                    e.detail
                );
            }
        }
    }
}

/// Whether `second` is `first` but for `f64`s that moved the way serde_json's own number
/// parsing moves them.
///
/// Without serde_json's `float_roundtrip` feature (the workspace enables only `raw_value`) its
/// parser does not always give the nearest `f64`: `9.386987530304307`, ryu's shortest form of
/// `0x4022c6233ac53bce`, parses one ULP high, and near 1e-91 two ULPs, so an accepted value may
/// move when re-encoded and decoded (found with 9,000 inputs of 16 to 25 significant digits;
/// see "Findings" in `README.md`). This lets an `f64` differ only by exactly what serde_json
/// gives for the re-encoded number on its own; every other field must be equal, and once the
/// feature is on the comparison is exact by itself.
fn equal_but_float_parsing(first: &Reading, second: &Reading) -> bool {
    match (serde_json::to_value(first), serde_json::to_value(second)) {
        (Ok(a), Ok(b)) => near(&a, &b),
        _ => false,
    }
}

/// What serde_json parses `x`'s own JSON text back to.
fn reparsed(x: f64) -> Option<f64> {
    let text = serde_json::to_string(&x).ok()?;
    serde_json::from_str(&text).ok()
}

fn near(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || reparsed(x) == Some(y),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| near(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && near(vx, vy))
        }
        _ => a == b,
    }
}
