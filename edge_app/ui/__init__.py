"""The station's Qt widgets. They show the core's state and forward clicks; the logic lives in
edge_app.station / pipeline / archive, which import no Qt."""
