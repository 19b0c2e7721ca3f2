"""Read API over the published gold: per-client keys, health and Prometheus metrics (FastAPI + uvicorn).

python -m oil_analysis.api serve                 # OIL_API_HOST / OIL_API_PORT (127.0.0.1:8000)
python -m oil_analysis.api keys add --client cda # prints a new key once, as the last line
"""
