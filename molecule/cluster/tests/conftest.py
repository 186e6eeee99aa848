"""Test order for molecule/cluster.

The scale test adds cl-w3 to the cluster (and so to every node's /etc/hosts). Every other test
checks the five-node cluster that converge built - a check-mode re-run of the node stage with the
scenario's inventory, for one, would see cl-w3's /etc/hosts line as a change. So the scale test
runs last, whatever file it is in; the others keep their order.
"""


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.name.startswith("test_scale_"))
