"""Step 5: answering queries: request (the values), ranking (pure functions), searcher (one index),
service (the one route, QueryService.answer), and the warm path: protocol, client, server."""
