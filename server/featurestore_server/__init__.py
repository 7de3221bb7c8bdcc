"""The gRPC feature server: ``featurestore serve``. It uses the library; the library never imports it."""
