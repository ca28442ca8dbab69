"""The simulated Gateway's TWS API side: the listening port and its clients (``server``), one
client connection and its dispatch (``session``), and the requests by what they concern
(``accounts``, ``orders``, ``market_data``)."""
