//! The proxy's Prometheus metrics, per service port and endpoint (and pod / pod-template-hash):
//! the raw material for canary analysis, so every series names the endpoint that served it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::table::{Endpoint, ServicePortKey};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub namespace: String,
    pub service: String,
    pub port: String,
    pub endpoint: String,
    pub pod: String,
    pub pod_template_hash: String,
}

impl EndpointLabels {
    pub fn new(key: &ServicePortKey, endpoint: &Endpoint) -> Self {
        EndpointLabels {
            namespace: key.namespace.clone(),
            service: key.service.clone(),
            port: key.port.clone(),
            endpoint: endpoint.addr.to_string(),
            pod: endpoint.pod.clone().unwrap_or_default(),
            pod_template_hash: endpoint.pod_template_hash.clone().unwrap_or_default(),
        }
    }
}

/// `code_class` label value of an HTTP status.
pub fn code_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

// prometheus-client 0.23's `#[prometheus(flatten)]` does not compile, so the endpoint labels are repeated.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub namespace: String,
    pub service: String,
    pub port: String,
    pub endpoint: String,
    pub pod: String,
    pub pod_template_hash: String,
    pub code_class: &'static str,
}

impl ResponseLabels {
    pub fn new(labels: &EndpointLabels, code_class: &'static str) -> Self {
        let EndpointLabels {
            namespace,
            service,
            port,
            endpoint,
            pod,
            pod_template_hash,
        } = labels.clone();
        ResponseLabels {
            namespace,
            service,
            port,
            endpoint,
            pod,
            pod_template_hash,
            code_class,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub namespace: String,
    pub service: String,
    pub port: String,
    pub endpoint: String,
    pub pod: String,
    pub pod_template_hash: String,
    /// "in": from the client to the endpoint; "out": back to the client.
    pub direction: &'static str,
}

impl BytesLabels {
    pub fn new(labels: &EndpointLabels, direction: &'static str) -> Self {
        let EndpointLabels {
            namespace,
            service,
            port,
            endpoint,
            pod,
            pod_template_hash,
        } = labels.clone();
        BytesLabels {
            namespace,
            service,
            port,
            endpoint,
            pod,
            pod_template_hash,
            direction,
        }
    }
}

fn duration_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<EndpointLabels, Counter>,
    pub responses: Family<ResponseLabels, Counter>,
    pub request_duration: HistogramFamily,
    pub bytes: Family<BytesLabels, Counter>,
    pub connections: Family<EndpointLabels, Counter>,
    pub open_connections: Family<EndpointLabels, Gauge>,
    pub connection_errors: Family<EndpointLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("drover_proxy");
        let requests = Family::<EndpointLabels, Counter>::default();
        let responses = Family::<ResponseLabels, Counter>::default();
        let request_duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let bytes = Family::<BytesLabels, Counter>::default();
        let connections = Family::<EndpointLabels, Counter>::default();
        let open_connections = Family::<EndpointLabels, Gauge>::default();
        let connection_errors = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests sent to an endpoint",
            requests.clone(),
        );
        registry.register(
            "responses",
            "HTTP responses from an endpoint by status class",
            responses.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "time from forwarding an HTTP request to its response headers",
            request_duration.clone(),
        );
        registry.register(
            "bytes",
            "bytes proxied to (in) and from (out) an endpoint",
            bytes.clone(),
        );
        registry.register(
            "connections",
            "TCP connections and UDP sessions opened to an endpoint",
            connections.clone(),
        );
        registry.register(
            "open_connections",
            "TCP connections and UDP sessions open to an endpoint",
            open_connections.clone(),
        );
        registry.register(
            "connection_errors",
            "failed connects or sends to an endpoint",
            connection_errors.clone(),
        );
        Metrics {
            registry,
            requests,
            responses,
            request_duration,
            bytes,
            connections,
            open_connections,
            connection_errors,
        }
    }

    pub fn encode(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }

    /// Drops the series of an endpoint that is gone, so the report does not grow without bound.
    pub fn forget(&self, labels: &EndpointLabels) {
        self.requests.remove(labels);
        self.request_duration.remove(labels);
        self.connections.remove(labels);
        self.open_connections.remove(labels);
        self.connection_errors.remove(labels);
        for direction in ["in", "out"] {
            self.bytes.remove(&BytesLabels::new(labels, direction));
        }
        for code_class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            self.responses
                .remove(&ResponseLabels::new(labels, code_class));
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
