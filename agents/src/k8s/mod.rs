//! Kubernetes: where the agents place containers next to their data. [`extender`] answers
//! kube-scheduler's extender calls (`filter`, `prioritize`) from placement's container scoring;
//! [`routes`] serves them over HTTP.

pub mod extender;
pub mod routes;
