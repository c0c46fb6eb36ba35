//! The API server's Prometheus metrics (prometheus-client, OpenMetrics text):
//! requests by verb, resource and code, their latency, open watches, and the
//! process's memory — names as kube-apiserver uses them where one exists.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    pub watches_open: Gauge<i64, AtomicI64>,
    resident_memory: Gauge<i64, AtomicI64>,
    store_revision: Gauge<i64, AtomicI64>,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~13 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 18,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let watches_open = Gauge::<i64, AtomicI64>::default();
        let resident_memory = Gauge::<i64, AtomicI64>::default();
        let store_revision = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "apiserver_request",
            "Requests answered, by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Time to answer a request (to the first byte of a watch)",
            latency.clone(),
        );
        registry.register(
            "apiserver_watches_open",
            "Watches being served",
            watches_open.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            resident_memory.clone(),
        );
        registry.register(
            "apiserver_storage_revision",
            "The store's current revision",
            store_revision.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            watches_open,
            resident_memory,
            store_revision,
        }
    }
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.into(),
                resource: resource.into(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                verb: verb.into(),
                resource: resource.into(),
            })
            .observe(seconds);
    }

    pub fn encode(&self, store_revision: Option<i64>) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory.set(rss as i64);
        }
        if let Some(r) = store_revision {
            self.store_revision.set(r);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn watch_started(&self) {
        self.watches_open.inc();
    }

    pub fn watch_ended(&self) {
        self.watches_open.dec();
    }

    pub fn open_watches(&self) -> i64 {
        self.watches_open.get()
    }
}

fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The Kubernetes verb of a request (list and watch are GETs without a name).
pub fn verb(method: &http::Method, has_name: bool, watch: bool) -> &'static str {
    match (method.as_str(), has_name, watch) {
        ("GET", _, true) => "WATCH",
        ("GET", false, _) => "LIST",
        ("GET", true, _) => "GET",
        ("POST", _, _) => "POST",
        ("PUT", _, _) => "PUT",
        ("PATCH", _, _) => "PATCH",
        ("DELETE", false, _) => "DELETECOLLECTION",
        ("DELETE", true, _) => "DELETE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_requests_and_gauges() {
        let m = Metrics::default();
        m.observe("GET", "pods", 200, 0.002);
        m.watch_started();
        let text = m.encode(Some(42));
        assert!(
            text.contains("apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("apiserver_watches_open 1"), "{text}");
        assert!(text.contains("apiserver_storage_revision 42"), "{text}");
        assert!(
            text.contains("apiserver_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
