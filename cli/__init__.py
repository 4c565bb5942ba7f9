"""``sentiment``: the command-line client of the batch sentiment service.

Upload a CSV (plain or .csv.gz) and wait for it or print its rows as they are
scored (its live feed, resumed across reconnections), read a batch's status,
download its results, list batches. It talks to ``SENTIMENT_URL`` (default
http://127.0.0.1:8000) with ``SENTIMENT_KEY`` as a bearer key, retries 503s
and lost connections (honouring ``Retry-After``), and sends every upload with
an ``Idempotency-Key`` so that a retried upload makes one batch. Standard
library only, plus tqdm for the progress bars (shown only on a terminal).
"""
