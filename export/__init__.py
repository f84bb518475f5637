"""edge_askd_export: turns a student or teacher checkpoint into board-ready ONNX / OpenVINO / LiteRT artifacts."""
