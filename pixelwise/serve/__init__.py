"""Serving: the HTTP API (`api.create_app`, `pixelwise serve`) and the web demo (`demo.build_demo`, `pixelwise demo`).

Both hold one loaded pipeline and run it from a single worker (`worker.ModelWorker`) under the bounds in
`limits.ServeLimits`; `service` holds the request models and the checks they share.
"""
