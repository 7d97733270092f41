package provider

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// NewSingleCommand is the command of a binary that links one provider
// kind (cmd/veil-provider-vault, cmd/veil-provider-aws): it is called
// name and serves kind unless --provider says otherwise, which it can only
// do to be refused, since no other kind is linked.
func NewSingleCommand(ctx context.Context, name, kind string) *cobra.Command {
	cmd := NewCommand(ctx)
	cmd.Use = name
	f := cmd.Flags().Lookup("provider")
	if err := f.Value.Set(kind); err != nil {
		panic(err)
	}
	f.DefValue = kind
	f.Usage = fmt.Sprintf("The provider kind to serve; %s links %s alone.", name, kind)
	return cmd
}
