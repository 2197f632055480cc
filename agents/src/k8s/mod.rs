//! Kubernetes: where the agents place containers next to their data. [`extender`] answers
//! kube-scheduler's extender calls (`filter`, `prioritize`) from placement's container scoring;
//! [`routes`] serves them over HTTP; [`controller`] patches Deployments' nodeAffinity from
//! `MLSysOpsApp` resources in clusters where no extender can be installed. Both read
//! [`knowledge::Containers`], the picture the cluster agent keeps of components, nodes and
//! placements.

pub mod controller;
pub mod extender;
pub mod knowledge;
pub mod routes;
