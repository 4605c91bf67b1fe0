"""The Personalizer-compatible API: Azure Personalizer's REST contract over Serendip's services.

A front, not a second engine: every route maps onto the services the ``/v1`` API uses (rank,
the reward queue, activation, policies, model versions, the decision log and the offline
evaluator). A Personalizer "resource" is one policy of one tenant: the API key names the tenant
and, optionally, the policy (``policy`` on the key; the tenant's ``personalizer`` policy when
it names none, created from ``policies/personalizer.yaml`` on first use). docs/personalizer.md
is the route-by-route map.
"""
