package convert

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// esoResources are the ESO objects read from a live cluster.
var esoResources = []string{"clustersecretstores", "secretstores", "externalsecrets", "pushsecrets", "clusterexternalsecrets", "clusterpushsecrets"}

// NewCommand returns `veil convert`.
func NewCommand() *cobra.Command {
	var (
		files       []string
		fromCluster bool
		kubeconfig  string
		namespace   string
		strict      bool
	)
	cmd := &cobra.Command{
		Use:   "convert (-f FILE|DIR|- ... | --from-cluster)",
		Short: "Print Veil manifests for External Secrets Operator manifests, with every difference Veil makes",
		Long: `convert reads External Secrets Operator (external-secrets.io) manifests and prints
the Veil (config.veil.dev/v1alpha1) manifests that mean the same, on standard
output. Before each object, comments starting "# veil convert:" say what
differs: fields Veil does not have (dropped), what kube-apiserver would refuse,
and what Veil does differently on purpose, with what to change. Objects of
other groups (a Secret in the same file) are printed as they are; ESO kinds
Veil has no equivalent of are left out and reported.

A summary goes to standard error. With --strict, convert exits 1 when any
object is refused, dropped a field, or was not converted.`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 && !fromCluster {
				return fmt.Errorf("name the manifests with -f (a file, a directory, or - for standard input), or use --from-cluster")
			}
			var in []*unstructured.Unstructured
			for _, f := range files {
				objs, err := readPath(cmd.InOrStdin(), f)
				if err != nil {
					return err
				}
				in = append(in, objs...)
			}
			if fromCluster {
				objs, err := readCluster(cmd.Context(), kubeconfig, namespace)
				if err != nil {
					return err
				}
				in = append(in, objs...)
			}
			c, err := New()
			if err != nil {
				return err
			}
			return run(cmd.Context(), c, in, cmd.OutOrStdout(), cmd.ErrOrStderr(), strict)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "a manifest file, a directory of them (read recursively: .yaml, .yml, .json), or - for standard input; repeatable")
	cmd.Flags().BoolVar(&fromCluster, "from-cluster", false, "read the ESO objects of the cluster the kubeconfig names")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for --from-cluster (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "with --from-cluster, only this namespace's objects (and every ClusterSecretStore)")
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 when an object is refused, dropped a field, or was not converted")
	return cmd
}

// ErrStrict is returned with --strict when something was not converted
// as it was.
var ErrStrict = fmt.Errorf("some objects were not converted as they were (see the comments)")

func run(ctx context.Context, c *Converter, in []*unstructured.Unstructured, stdout, stderr io.Writer, strict bool) error {
	var (
		out          []*unstructured.Unstructured
		notConverted []Difference
		n            Summary
	)
	diffs := map[*unstructured.Unstructured][]Difference{}
	for _, o := range in {
		v, d := c.Convert(ctx, o)
		n.add(v, d)
		if v == nil {
			notConverted = append(notConverted, d...)
			continue
		}
		out = append(out, v)
		diffs[v] = d
	}
	for _, d := range notConverted {
		if _, err := fmt.Fprintf(stdout, "# veil convert: %s\n", oneLine(d.String())); err != nil {
			return err
		}
	}
	if err := Write(stdout, out, diffs); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "veil convert: %s\n", n)
	if strict && n.Refused+n.Dropped+n.NotConverted > 0 {
		return ErrStrict
	}
	return nil
}

// Summary counts objects by what converting them found. An object may
// count under several of Refused, Dropped and Behaviour.
type Summary struct {
	Converted, AsIs, Refused, Dropped, Behaviour, NotConverted, Other int
}

func (n *Summary) add(v *unstructured.Unstructured, d []Difference) {
	has := map[Severity]bool{}
	for _, x := range d {
		has[x.Severity] = true
	}
	switch {
	case v == nil:
		n.NotConverted++
		return
	case len(d) == 0 && v.GetAPIVersion() != configv1alpha1.SchemeGroupVersion.String():
		n.Other++
		return
	}
	n.Converted++
	if !has[Refused] && !has[Dropped] {
		n.AsIs++
	}
	for sev, count := range map[Severity]*int{Refused: &n.Refused, Dropped: &n.Dropped, Behaviour: &n.Behaviour} {
		if has[sev] {
			*count++
		}
	}
}

func (n Summary) String() string {
	return fmt.Sprintf("%d ESO objects converted: %d taken as they are, %d refused, %d with dropped fields, %d with behaviour differences; %d ESO objects not converted; %d other objects passed through",
		n.Converted, n.AsIs, n.Refused, n.Dropped, n.Behaviour, n.NotConverted, n.Other)
}

// readPath reads a file, every manifest under a directory, or stdin.
func readPath(stdin io.Reader, p string) ([]*unstructured.Unstructured, error) {
	if p == "-" {
		return Read(stdin)
	}
	info, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	var paths []string
	if info.IsDir() {
		err = filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(f)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					paths = append(paths, f)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(paths)
	} else {
		paths = []string{p}
	}
	var out []*unstructured.Unstructured
	for _, f := range paths {
		r, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		objs, err := Read(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// readCluster lists the ESO objects of a live cluster, at the version the
// cluster serves as preferred.
func readCluster(ctx context.Context, kubeconfig, namespace string) ([]*unstructured.Unstructured, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, res := range esoResources {
		var list *unstructured.UnstructuredList
		var lastErr error
		// PushSecrets and ClusterPushSecrets are v1alpha1 in ESO.
		for _, version := range []string{"v1", "v1beta1", "v1alpha1"} {
			gvr := schema.GroupVersionResource{Group: ESOGroup, Version: version, Resource: res}
			ri := client.Resource(gvr)
			var r dynamic.ResourceInterface = ri
			if namespace != "" && !strings.HasPrefix(res, "cluster") {
				r = ri.Namespace(namespace)
			}
			list, lastErr = r.List(ctx, metav1.ListOptions{})
			if lastErr == nil {
				break
			}
		}
		if apierrors.IsNotFound(lastErr) {
			continue // this cluster's ESO does not serve it
		}
		if lastErr != nil {
			return nil, fmt.Errorf("listing %s.%s: %w", res, ESOGroup, lastErr)
		}
		for i := range list.Items {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}
