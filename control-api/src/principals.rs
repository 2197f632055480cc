//! S3 principals: their request statistics and throttles (`/api/v1/telemetry/principals`, `/api/v1/principals/*`).
