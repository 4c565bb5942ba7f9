"""Following a batch as it is scored: the events and ``results.ndjson?follow=true`` streams, each a
follower that one hub thread per web worker feeds from one shared poll of the followed batches."""
