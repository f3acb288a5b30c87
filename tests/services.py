"""Real services for tests, started on 127.0.0.1 as session fixtures (moto S3, mlflow server)."""
