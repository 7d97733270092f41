package v1alpha1

// The condition veil-apiserver keeps in every ClusterSecretStore's status
// about which namespaces its spec.conditions let in.
const (
	// ConditionMatchesAllNamespaces is True when a namespaceSelector of
	// spec.conditions matches every namespace that lacks particular labels,
	// including namespaces created later: `{}`, or only NotIn and
	// DoesNotExist expressions. Whoever may create a namespace, or label
	// their own, can then use the store.
	ConditionMatchesAllNamespaces = "MatchesAllNamespaces"

	// ReasonOpenNamespaceSelector: a namespaceSelector matches a new
	// namespace without labels.
	ReasonOpenNamespaceSelector = "OpenNamespaceSelector"
	// ReasonNamespacesChosen: every condition needs a namespace to be named
	// or to carry labels a new namespace does not have.
	ReasonNamespacesChosen = "NamespacesChosen"
)
