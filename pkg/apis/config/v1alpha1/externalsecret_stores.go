package v1alpha1

// Normalized is ref with its kind defaulted (SecretStore when unset).
func (ref SecretStoreRef) Normalized() SecretStoreRef {
	if ref.Kind == "" {
		ref.Kind = SecretStoreKind
	}
	return ref
}

// storeOf is the store an entry with src reads from: its own
// sourceRef.storeRef, else spec.secretStoreRef. ok is false when neither
// is set (which the CRD refuses).
func (es *ExternalSecret) storeOf(src *StoreSourceRef) (SecretStoreRef, bool) {
	if src != nil && src.StoreRef != nil {
		return src.StoreRef.Normalized(), true
	}
	if es.Spec.SecretStoreRef != nil {
		return es.Spec.SecretStoreRef.Normalized(), true
	}
	return SecretStoreRef{}, false
}

// DataStore is the store spec.data[i] reads from.
func (es *ExternalSecret) DataStore(i int) (SecretStoreRef, bool) {
	return es.storeOf(es.Spec.Data[i].SourceRef)
}

// DataFromStore is the store spec.dataFrom[i] reads from.
func (es *ExternalSecret) DataFromStore(i int) (SecretStoreRef, bool) {
	return es.storeOf(es.Spec.DataFrom[i].SourceRef)
}

// StoreRefs are the distinct stores es reads from, kinds defaulted:
// spec.secretStoreRef first when some entry reads through it, then the
// others in the order the entries name them (dataFrom, then data).
func (es *ExternalSecret) StoreRefs() []SecretStoreRef {
	var out []SecretStoreRef
	add := func(ref SecretStoreRef, ok bool) {
		if !ok {
			return
		}
		for _, r := range out {
			if r == ref {
				return
			}
		}
		out = append(out, ref)
	}
	if es.Spec.SecretStoreRef != nil {
		def := es.Spec.SecretStoreRef.Normalized()
		for i := range es.Spec.DataFrom {
			if r, ok := es.DataFromStore(i); ok && r == def {
				add(def, true)
			}
		}
		for i := range es.Spec.Data {
			if r, ok := es.DataStore(i); ok && r == def {
				add(def, true)
			}
		}
	}
	for i := range es.Spec.DataFrom {
		add(es.DataFromStore(i))
	}
	for i := range es.Spec.Data {
		add(es.DataStore(i))
	}
	return out
}

// ReadThrough is a copy of es whose data and dataFrom are only the entries
// es reads through ref (kind defaulted), in their order, with ref as its
// secretStoreRef: what es asks of that one store.
func (es *ExternalSecret) ReadThrough(ref SecretStoreRef) *ExternalSecret {
	ref = ref.Normalized()
	out := es.DeepCopy()
	out.Spec.SecretStoreRef = &ref
	out.Spec.Data, out.Spec.DataFrom = nil, nil
	for i, d := range es.Spec.Data {
		if r, ok := es.DataStore(i); ok && r == ref {
			out.Spec.Data = append(out.Spec.Data, *d.DeepCopy())
		}
	}
	for i, d := range es.Spec.DataFrom {
		if r, ok := es.DataFromStore(i); ok && r == ref {
			out.Spec.DataFrom = append(out.Spec.DataFrom, *d.DeepCopy())
		}
	}
	return out
}
