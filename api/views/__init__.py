"""The API's views, one per operation, grouped by resource."""
