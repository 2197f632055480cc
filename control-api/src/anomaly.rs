//! Anomaly verdicts: the wire types of `GET /api/v1/anomalies`.
