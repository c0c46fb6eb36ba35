//! Kubernetes protobuf request bodies decoded into the Kubernetes JSON shape.
