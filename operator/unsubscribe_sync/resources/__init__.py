"""Pure builders: an UnsubscribeSync spec goes in, the desired Kubernetes objects come out.

No Kubernetes client and no kopf here; the controller applies what these functions return.
"""

from unsubscribe_sync.resources.children import desired_children
from unsubscribe_sync.resources.labels import ChildNames, child_labels, selector_labels
from unsubscribe_sync.resources.push_field import effective_push_field

__all__ = ["ChildNames", "child_labels", "desired_children", "effective_push_field", "selector_labels"]
