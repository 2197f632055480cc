//! Evidence: what was observed about a subject, and how much each kind of failure weighs.

use crate::subject::Subject;
use control_api::trust::EvidenceKind;

/// One observation about a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// About whom.
    pub subject: Subject,
    /// What was observed.
    pub kind: EvidenceKind,
    /// How many times (or an operator's weight); finite and >= 0.
    pub amount: f64,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Why, for people (kept with the subject's recent evidence).
    pub reason: String,
}

impl Evidence {
    /// Evidence of `amount` × `kind` about `subject` at `at_ms`.
    pub fn new(subject: Subject, kind: EvidenceKind, amount: f64, at_ms: u64, reason: impl Into<String>) -> Self {
        Self {
            subject,
            kind,
            amount,
            at_ms,
            reason: reason.into(),
        }
    }
}

/// How much one unit of `kind` adds to β (failures) or, for positive kinds, to α (weight 1).
///
/// An error proves little on its own (networks fail), so it weighs as one success does. Bad
/// credentials are deliberate more often than not: 3. Corrupted data and forged agent messages
/// prove that something is wrong with the subject itself: 5. The anomaly detector's verdicts
/// summarise a whole window: malfunction 2, attack and tampering 10.
#[must_use]
pub const fn weight(kind: EvidenceKind) -> f64 {
    match kind {
        EvidenceKind::Success
        | EvidenceKind::OperatorSuccess
        | EvidenceKind::OperatorFailure
        | EvidenceKind::Error
        | EvidenceKind::Timeout
        | EvidenceKind::Unavailable => 1.0,
        EvidenceKind::ChecksumFailure | EvidenceKind::BadLinkSignature => 5.0,
        EvidenceKind::AuthFailure | EvidenceKind::BadToken => 3.0,
        EvidenceKind::AnomalyMalfunction => 2.0,
        EvidenceKind::AnomalyAttack | EvidenceKind::AnomalyTampering => 10.0,
    }
}

/// Whether `kind` proves corrupted data (counted apart as `checksum_failures`).
#[must_use]
pub const fn is_integrity(kind: EvidenceKind) -> bool {
    matches!(kind, EvidenceKind::ChecksumFailure | EvidenceKind::AnomalyTampering)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_positive_weight_and_proof_of_corruption_weighs_most() {
        for k in EvidenceKind::ALL {
            assert!(weight(k) > 0.0, "{k:?}");
        }
        assert!(weight(EvidenceKind::ChecksumFailure) > weight(EvidenceKind::Error));
        assert!(weight(EvidenceKind::AnomalyTampering) >= weight(EvidenceKind::ChecksumFailure));
        assert!(is_integrity(EvidenceKind::ChecksumFailure) && !is_integrity(EvidenceKind::Error));
    }
}
