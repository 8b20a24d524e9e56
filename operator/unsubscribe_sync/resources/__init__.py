"""Pure builders: an UnsubscribeSync spec goes in, the desired Kubernetes objects come out.

No Kubernetes client and no kopf here; the controller applies what these functions return.
"""

from unsubscribe_sync.resources.children import desired_children
from unsubscribe_sync.resources.labels import ChildNames, child_labels, selector_labels

__all__ = ["ChildNames", "child_labels", "desired_children", "selector_labels"]
