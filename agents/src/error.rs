//! What can fail in the control plane, each error saying what failed and on what.

/// An error of the agents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the gateway's admin API failed.
    #[error("gateway: {what}: {source}")]
    Gateway {
        /// What was asked.
        what: String,
        /// The client's error (boxed: it is large, and every result of the crate carries it).
        #[source]
        source: Box<control_api::ClientError>,
    },
    /// The decision log or the agent's state store failed.
    #[error("agent store {what}: {message}")]
    Store {
        /// What was being read or written.
        what: String,
        /// The store's message.
        message: String,
    },
    /// A descriptor or intent is not valid; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// This agent's key or the registry of its peers' keys could not be loaded.
    #[error("agent identity: {0}")]
    Identity(#[from] trust::identity::IdentityError),
    /// No such thing (app, decision, bucket).
    #[error("{0}")]
    NotFound(String),
    /// A policy failed to analyze or plan.
    #[error("policy {policy}: {message}")]
    Policy {
        /// The policy.
        policy: String,
        /// What went wrong.
        message: String,
    },
    /// A mechanism refused or failed a command.
    #[error("mechanism {mechanism}: {message}")]
    Mechanism {
        /// The mechanism.
        mechanism: String,
        /// What went wrong.
        message: String,
    },
    /// The link to a parent or child agent failed.
    #[error("agent link {what}: {message}")]
    Link {
        /// What was being done.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// A model failed to train or predict.
    #[error("model {model}: {message}")]
    Model {
        /// The model.
        model: String,
        /// What went wrong.
        message: String,
    },
}

/// The result type of the agents.
pub type Result<T, E = Error> = std::result::Result<T, E>;
