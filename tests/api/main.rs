//! Integration tests through the real router, store and AWS SDK (against a fake Rekognition).

mod auth;
mod browser;
mod consistency;
mod faces;
mod fake_rekognition;
mod flow;
mod hardening;
mod helpers;
mod liveness;
mod local_engine;
mod metrics;
mod mobilefacenet;
mod oidc;
mod openapi;
mod postgres;
mod rekognition;
mod replicas;
mod smoke;
mod store_contract;
mod tokens;
