//! W3C trace context through records: `traceparent`, `tracestate` and `baggage` travel as
//! record headers, so a consumer's span continues (and links to) the producer's.
//!
//! The library creates `tracing` spans under the target [`TARGET`], at info level, with
//! OpenTelemetry's messaging attributes (`otel.name`, `otel.kind`, `messaging.*`); a service
//! that installs `tracing-opentelemetry`'s layer (and an exporter) gets them as
//! OpenTelemetry spans. The library never installs an exporter. Without a subscriber that
//! wants them, the spans are disabled at their call site and nothing here runs.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::header::Header;

/// The target of the library's spans: a subscriber enables them with
/// `ordering::messaging=info` (an exporter's layer), and can leave them out of its logs.
pub const TARGET: &str = "ordering::messaging";

/// The headers trace context travels in.
pub const TRACE_HEADERS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

/// W3C trace context and baggage.
static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
});

/// The propagator of W3C trace context and baggage, for HTTP headers as for record headers.
pub fn propagator() -> &'static TextMapCompositePropagator {
    &PROPAGATOR
}

/// The trace context record headers carry; an empty context when they carry none (or one
/// that does not parse).
pub fn extract(headers: &[Header]) -> Context {
    PROPAGATOR.extract(&Headers(headers))
}

/// Writes `context` into `headers`, replacing any trace headers there: a record carries the
/// context of the span that sent it.
pub fn inject(context: &Context, headers: &mut Vec<Header>) {
    headers.retain(|h| !TRACE_HEADERS.iter().any(|t| h.name.eq_ignore_ascii_case(t)));
    PROPAGATOR.inject_context(context, &mut HeadersMut(headers));
}

/// Writes the context of `span` into `headers` when the span is recorded by OpenTelemetry;
/// otherwise leaves them as they are.
pub fn inject_span(span: &tracing::Span, headers: &mut Vec<Header>) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    if context.span().span_context().is_valid() {
        inject(&context, headers);
    }
}

/// Makes the trace a record's `headers` carry the parent of `span`, and links `span` to it:
/// the consumer's span continues the producer's trace and says which span sent the record
/// (OpenTelemetry's messaging conventions). Nothing when the span is disabled or the record
/// carries no trace.
pub fn continue_from(span: &tracing::Span, headers: &[Header]) {
    if span.is_disabled() {
        return;
    }
    continue_from_context(span, extract(headers));
}

/// [`continue_from`] with the context already extracted.
pub(crate) fn continue_from_context(span: &tracing::Span, parent: Context) {
    let sender = parent.span().span_context().clone();
    if sender.is_valid() {
        let _ = span.set_parent(parent);
        span.add_link(sender);
    }
}

/// Starts `span` as a new trace that links to the trace `headers` carry: a redrive is a new
/// story about an old record, and an operator can follow the link back.
pub fn link_new_trace(span: &tracing::Span, headers: &[Header]) {
    if span.is_disabled() {
        return;
    }
    let _ = span.set_parent(Context::new());
    let original = extract(headers).span().span_context().clone();
    if original.is_valid() {
        span.add_link(original);
    }
}

/// Writes the span's trace and span ids into its `trace_id` and `span_id` fields (when it
/// declares them), so that the logs of what runs in it say which trace they belong to.
pub fn record_ids(span: &tracing::Span) {
    record_ids_of(span, span);
}

/// Writes the trace and span ids of `of` into the `trace_id` and `span_id` fields of `span`.
pub fn record_ids_of(span: &tracing::Span, of: &tracing::Span) {
    if span.is_disabled() || of.is_disabled() {
        return;
    }
    let context = of.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", ids.trace_id().to_string().as_str());
        span.record("span_id", ids.span_id().to_string().as_str());
    }
}

/// Which records get a consumer span: decided *before* the span is built, because building
/// one costs microseconds and a sampler that drops 99 % of them would still pay for every one.
///
/// The default, [`Sampling::EVERY_RECORD`], builds a span for every record and leaves the
/// decision to the tracer provider's sampler. A service that knows its sampler says so with
/// [`set_sampling`] and installs [`Sampling::sampler`] in its provider: then a record that
/// carries a trace context follows that context's `sampled` flag (for the `parentbased_*`
/// samplers), a record that carries none is kept with the sampler's ratio, and only the kept
/// records get spans. A record that is not kept runs under a trace context that says so, so
/// the spans beneath it (retries, dead letters, its handler's own) are not kept either.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    rule: Rule,
    /// The share of records kept where no parent decides, in `[0, 1]`.
    ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Rule {
    /// A span for every record; the provider's sampler decides.
    EveryRecord = 0,
    /// A parent's `sampled` flag decides; records without one are kept with the ratio.
    ParentBased = 1,
    /// The ratio decides for every record, as `traceidratio` does.
    Ratio = 2,
}

/// A sampler name or ratio that is not one of OpenTelemetry's (`OTEL_TRACES_SAMPLER`,
/// `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplingError {
    /// Not a sampler this library can decide for ahead of the span.
    #[error(
        "`{0}` is not a supported sampler: always_on, always_off, traceidratio, \
         parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
    )]
    UnknownSampler(String),
    /// Not a number from 0 to 1.
    #[error("`{0}` is not a ratio from 0 to 1")]
    BadRatio(String),
}

impl Sampling {
    /// A span for every record, the provider's sampler deciding: the default.
    pub const EVERY_RECORD: Self = Self {
        rule: Rule::EveryRecord,
        ratio: 1.0,
    };

    /// A record's parent decides; a record without one is kept with `ratio`
    /// (`parentbased_traceidratio`). Clamped to `[0, 1]`.
    pub fn parent_based(ratio: f64) -> Self {
        Self {
            rule: Rule::ParentBased,
            ratio: clamp(ratio),
        }
    }

    /// Every record kept with `ratio`, whatever its parent says (`traceidratio`).
    pub fn ratio(ratio: f64) -> Self {
        Self {
            rule: Rule::Ratio,
            ratio: clamp(ratio),
        }
    }

    /// The sampling an OpenTelemetry sampler name and argument stand for (the values of
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`); no name is the SDK's default,
    /// `parentbased_always_on`.
    pub fn from_otel(name: Option<&str>, arg: Option<&str>) -> Result<Self, SamplingError> {
        let ratio = || match arg.map(str::trim).filter(|a| !a.is_empty()) {
            None => Ok(1.0),
            Some(raw) => raw
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| SamplingError::BadRatio(raw.to_owned())),
        };
        match name.map(str::trim).unwrap_or("parentbased_always_on") {
            "always_on" => Ok(Self::ratio(1.0)),
            "always_off" => Ok(Self::ratio(0.0)),
            "traceidratio" => Ok(Self::ratio(ratio()?)),
            "" | "parentbased_always_on" => Ok(Self::parent_based(1.0)),
            "parentbased_always_off" => Ok(Self::parent_based(0.0)),
            "parentbased_traceidratio" => Ok(Self::parent_based(ratio()?)),
            other => Err(SamplingError::UnknownSampler(other.to_owned())),
        }
    }

    /// The sampler for the tracer provider that matches this sampling: it keeps the spans the
    /// library decided to build, and decides for every other span as the named sampler would.
    pub fn sampler(&self) -> Presampled {
        let ratio = Sampler::TraceIdRatioBased(self.ratio);
        Presampled(match self.rule {
            Rule::EveryRecord => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Rule::ParentBased => Sampler::ParentBased(Box::new(ratio)),
            Rule::Ratio => ratio,
        })
    }

    /// Whether this is [`Sampling::EVERY_RECORD`]: the provider's sampler decides.
    pub(crate) fn is_every_record(&self) -> bool {
        self.rule == Rule::EveryRecord
    }

    /// Whether a record with these trace `headers` gets a span (not for
    /// [`Sampling::EVERY_RECORD`], where every record does). A record not kept costs a look at
    /// its `traceparent`'s flag or trace id, or a random number: no span, no context (what
    /// fails among them gets one then, [`unsampled_context`]).
    pub(crate) fn decide(&self, headers: &[Header]) -> Sampled {
        let traceparent = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("traceparent"))
            .and_then(|h| h.value.as_deref());
        let kept = match traceparent.and_then(Peek::of) {
            Some(peek) if self.rule == Rule::ParentBased => peek.sampled,
            Some(peek) => self.keeps(peek.trace_id_low),
            // The trace id its span would start: a random one, as the provider's would be.
            None => self.keeps(random::<u64>()),
        };
        if !kept {
            return Sampled::NoSpan;
        }
        // Kept (1 % of records, say): read the parent in full. One that does not parse after
        // all leaves a root, kept by the draw above.
        Sampled::Span {
            parent: parent_context(headers),
        }
    }

    /// Whether `traceidratio` keeps a trace whose id ends in `trace_id_low`: the SDK's rule
    /// (`TraceIdRatioBased`), the id's last 8 bytes against the ratio, so that a trace the
    /// library drops is dropped by the provider's sampler too (tested against it).
    fn keeps(&self, trace_id_low: u64) -> bool {
        if self.ratio >= 1.0 {
            return true;
        }
        let bound = (self.ratio.max(0.0) * (1u64 << 63) as f64) as u64;
        (trace_id_low >> 1) < bound
    }

    fn encode(self) -> u64 {
        self.ratio.to_bits()
    }
}

fn clamp(ratio: f64) -> f64 {
    if ratio.is_nan() {
        1.0
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Self::EVERY_RECORD
    }
}

/// What the sampling decision reads of a `traceparent`: its sampled flag and the last 8 bytes
/// of its trace id, from a value shaped as version 00 (`00-{32 hex}-{16 hex}-{2 hex}`). The
/// full parse waits until the record is kept.
struct Peek {
    sampled: bool,
    trace_id_low: u64,
}

impl Peek {
    fn of(value: &[u8]) -> Option<Self> {
        let [b'0', b'0', b'-', ..] = value else {
            return None;
        };
        if value.len() != 55 || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let flags = hex(&value[53..55])?;
        Some(Self {
            sampled: flags & 1 == 1,
            trace_id_low: hex(&value[19..35])?,
        })
    }
}

/// Lower-case hex (as W3C Trace Context writes ids), at most 16 digits.
fn hex(bytes: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for &b in bytes {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        n = n << 4 | u64::from(digit);
    }
    Some(n)
}

/// The trace context `headers` carry, if a valid one. A record with only a `traceparent`
/// (what a producer of this library writes) is read without the propagators, which cost
/// more than a no-op record's whole dispatch; anything else goes through them.
fn parent_context(headers: &[Header]) -> Option<Context> {
    let mut traceparent = None;
    let mut others = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("traceparent") {
            traceparent = header.value.as_deref();
        } else if TRACE_HEADERS[1..]
            .iter()
            .any(|t| header.name.eq_ignore_ascii_case(t))
        {
            others = true;
        }
    }
    let traceparent = traceparent?;
    let parent = match parse_traceparent(traceparent).filter(|_| !others) {
        Some(ids) => Context::new().with_remote_span_context(ids),
        None => extract(headers),
    };
    parent.span().span_context().is_valid().then_some(parent)
}

/// A version-00 `traceparent` (`00-{trace id}-{span id}-{flags}`, lower-case hex, ids not
/// zero), as W3C Trace Context defines it; `None` for anything else, which the propagator
/// then reads (or refuses).
fn parse_traceparent(value: &[u8]) -> Option<SpanContext> {
    let [b'0', b'0', b'-', rest @ ..] = value else {
        return None;
    };
    let (trace, rest) = rest.split_at_checked(32)?;
    let [b'-', rest @ ..] = rest else { return None };
    let (span, rest) = rest.split_at_checked(16)?;
    let [b'-', f1, f2] = rest else { return None };
    let (high, low) = trace.split_at(16);
    let trace = u128::from(hex(high)?) << 64 | u128::from(hex(low)?);
    let span = hex(span)?;
    let flags = u8::try_from(hex(&[*f1, *f2])?).ok()?;
    (trace != 0 && span != 0).then(|| {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::new(flags) & TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )
    })
}

/// What [`Sampling::decide`] decided for one record.
#[derive(Debug)]
pub(crate) enum Sampled {
    /// Build its span (marked [`PRESAMPLED`]), as a child of `parent` when it has one.
    Span { parent: Option<Context> },
    /// No span.
    NoSpan,
}

/// The context that what runs after an unsampled record's first attempt (its retries, its
/// dead letter and their sends) runs under: the record's own parent when it carries one,
/// otherwise a new trace that the process's sampling does not keep. Spans built under it are
/// not kept either, so an unsampled record leaves no fragments of a trace behind. (Its first
/// attempt runs under no context at all: a context per record costs more than a no-op
/// record's dispatch. A handler that makes spans of its own and wants them in the record's
/// trace runs them under [`extract`] of the record's headers.)
pub(crate) fn unsampled_context(headers: &[Header]) -> Context {
    if let Some(parent) = parent_context(headers) {
        return parent;
    }
    let sampling = sampling();
    let trace_id = loop {
        let id = random::<u128>();
        // A ratio of 1 keeps every trace, and then no record is unsampled.
        if sampling.ratio >= 1.0 || !sampling.keeps(id as u64) {
            break TraceId::from(id);
        }
    };
    let unsampled = SpanContext::new(
        trace_id,
        SpanId::from(random::<u64>().max(1)),
        TraceFlags::default(),
        false,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(unsampled)
}

/// A fast random number (the thread's small generator, as the SDK's ids come from).
fn random<T>() -> T
where
    rand::distr::StandardUniform: rand::distr::Distribution<T>,
{
    use rand::{Rng, SeedableRng};
    thread_local! {
        static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_os_rng());
    }
    RNG.with(|rng| rng.borrow_mut().random())
}

/// The attribute that marks a span the library decided to keep.
pub const PRESAMPLED: &str = "ordering.presampled";

/// A tracer provider's sampler that keeps the spans marked [`PRESAMPLED`] (the library drew
/// them already: drawing again would keep the square of the ratio) and asks the inner sampler
/// about every other span. Built by [`Sampling::sampler`].
#[derive(Debug, Clone)]
pub struct Presampled(Sampler);

impl ShouldSample for Presampled {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if attributes.iter().any(|kv| kv.key.as_str() == PRESAMPLED) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent_context
                    .map(|cx| cx.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// The process's sampling: one word each, read for every record without a lock.
static RULE: AtomicU8 = AtomicU8::new(Rule::EveryRecord as u8);
static RATIO: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000); // 1.0

/// Sets the process's [`Sampling`], as the subscriber is the process's: call it where the
/// tracer provider is built, with the sampling whose [`Sampling::sampler`] it was given.
pub fn set_sampling(sampling: Sampling) {
    RATIO.store(sampling.encode(), Ordering::Relaxed);
    RULE.store(sampling.rule as u8, Ordering::Relaxed);
}

/// The process's [`Sampling`].
pub fn sampling() -> Sampling {
    let rule = match RULE.load(Ordering::Relaxed) {
        1 => Rule::ParentBased,
        2 => Rule::Ratio,
        _ => Rule::EveryRecord,
    };
    Sampling {
        rule,
        ratio: f64::from_bits(RATIO.load(Ordering::Relaxed)),
    }
}

struct Headers<'a>(&'a [Header]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(key))
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.name.as_str()).collect()
    }
}

struct HeadersMut<'a>(&'a mut Vec<Header>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push(Header {
            name: key.to_owned(),
            value: Some(value.into_bytes()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: Some(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        let headers = vec![header("other", "x"), header("traceparent", PARENT)];
        let context = extract(&headers);
        let span = context.span().span_context().clone();
        assert!(span.is_valid() && span.is_remote());
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        let own = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let mut out = headers.clone();
        inject(&Context::new().with_remote_span_context(own), &mut out);
        let parents: Vec<&Header> = out.iter().filter(|h| h.name == "traceparent").collect();
        assert_eq!(parents.len(), 1, "replaced, not added: {out:?}");
        assert_eq!(
            parents[0].value.as_deref(),
            Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..])
        );
        assert!(out.iter().any(|h| h.name == "other"), "other headers stay");
    }

    #[test]
    fn a_redrive_starts_a_new_trace_even_inside_another_span_and_links_back() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!(target: TARGET, "outer");
            let _inside = outer.enter();
            let redrive = tracing::info_span!(target: TARGET, "redrive");
            link_new_trace(&redrive, &[header("traceparent", PARENT)]);
            let own = redrive.context().span().span_context().clone();
            let outer_trace = outer.context().span().span_context().trace_id();
            assert!(own.is_valid());
            assert_ne!(own.trace_id(), outer_trace, "not the current span's trace");
            assert_ne!(
                own.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );

            // A record continues the trace it carries, as a child.
            let process = tracing::info_span!(target: TARGET, "process");
            let mut meta = crate::RecordMeta::new(crate::TopicPartition::new("t", 0), 1);
            meta.headers.push(header("traceparent", PARENT));
            continue_from(&process, &meta.headers);
            let own = process.context().span().span_context().clone();
            assert_eq!(
                own.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        });
    }

    #[test]
    fn the_ratio_keeps_what_the_sdks_sampler_keeps() {
        use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
        for ratio in [0.0, 0.01, 0.25, 0.5, 0.999, 1.0] {
            let sdk = Sampler::TraceIdRatioBased(ratio);
            for n in 0..2_000u128 {
                let id = n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ (n << 64);
                let by_sdk = sdk
                    .should_sample(None, TraceId::from(id), "", &SpanKind::Consumer, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample;
                assert_eq!(
                    Sampling::ratio(ratio).keeps(id as u64),
                    by_sdk,
                    "{ratio} {id:x}"
                );
            }
        }
    }

    #[test]
    fn a_plain_traceparent_is_read_as_the_propagator_reads_it() {
        let cases = [
            PARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "",
        ];
        for value in cases {
            let headers = [header("traceparent", value)];
            let by_propagator = extract(&headers).span().span_context().clone();
            let by_hand = parent_context(&headers).map(|cx| cx.span().span_context().clone());
            assert_eq!(
                by_hand.unwrap_or(SpanContext::empty_context()),
                by_propagator,
                "{value}"
            );
        }
        // Beside tracestate or baggage, the propagator reads them all.
        let headers = [
            header("traceparent", PARENT),
            header("tracestate", "vendor=1"),
        ];
        let parent = parent_context(&headers).unwrap();
        assert_eq!(
            parent.span().span_context().trace_state().header(),
            "vendor=1"
        );
    }

    #[test]
    fn no_or_bad_trace_headers_give_an_empty_context() {
        for headers in [
            vec![],
            vec![header("traceparent", "nonsense")],
            vec![Header {
                name: "traceparent".into(),
                value: Some(vec![0xff, 0xfe]),
            }],
        ] {
            assert!(!extract(&headers).span().span_context().is_valid());
        }
    }
}
