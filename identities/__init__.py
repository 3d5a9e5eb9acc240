"""The domain: teams, clusters, role catalog, identity requests, identities, policy, audit."""
