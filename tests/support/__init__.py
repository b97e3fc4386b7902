"""What the suites share and the product does not ship: private PostgreSQL and S3 servers, and
the API test client with its users."""
