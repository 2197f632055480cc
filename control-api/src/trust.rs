//! Trust reputation and identities: the wire types of `/api/v1/trust/*` and `/api/v1/identities`.
