package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// aclCmd manages ACLs: the bootstrap, policies and tokens (Consul's
// "consul acl" in raftkv's flag style).
func (a *app) aclCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "acl", Short: "Bootstrap ACLs; manage policies and tokens"}
	cmd.AddCommand(&cobra.Command{
		Use:   "bootstrap",
		Short: "Create the first management token (once per cluster)",
		Long: `Create the cluster's first management token and print it. This works
once; keep the SecretID safe (it can do anything) and use it to create
policies and less powerful tokens.`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			t, err := c.ACLBootstrap(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(t, func(w io.Writer) { printToken(w, t) })
		}),
	}, a.policyCmd(), a.tokenCmd())
	return cmd
}

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Create, list, read and delete policies"}
	var name, description, rules, id string
	create := &cobra.Command{
		Use:   "create --name NAME --rules RULES|@FILE",
		Short: "Create a policy from Consul's rules (HCL or JSON)",
		Example: `  raftkv acl policy create --name web --rules 'key_prefix "web/" { policy = "write" }'
  raftkv acl policy create --name ops --rules @ops.hcl`,
		Args: cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			text, err := readRules(rules)
			if err != nil {
				return err
			}
			p, err := c.PolicyCreate(cmd.Context(), client.ACLPolicy{Name: name, Description: description, Rules: text})
			if err != nil {
				return err
			}
			return a.print(p, func(w io.Writer) { printPolicy(w, p) })
		}),
	}
	create.Flags().StringVar(&name, "name", "", "the policy's unique name")
	create.Flags().StringVar(&description, "description", "", "what the policy is for")
	create.Flags().StringVar(&rules, "rules", "", "the rules, or @FILE to read them from a file")
	_ = create.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List policies",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			ps, err := c.PolicyList(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(ps, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tDESCRIPTION")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, p.Name, p.Description)
				}
				tw.Flush()
			})
		}),
	}
	// find resolves --id or --name.
	find := func(cmd *cobra.Command, c *client.Client) (client.ACLPolicy, error) {
		switch {
		case id != "" && name != "":
			return client.ACLPolicy{}, errors.New("give --id or --name, not both")
		case id != "":
			return c.PolicyRead(cmd.Context(), id)
		case name != "":
			return c.PolicyReadByName(cmd.Context(), name)
		}
		return client.ACLPolicy{}, errors.New("give --id or --name")
	}
	read := &cobra.Command{
		Use:   "read --id ID | --name NAME",
		Short: "Show a policy and its rules",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			p, err := find(cmd, c)
			if err != nil {
				return err
			}
			return a.print(p, func(w io.Writer) { printPolicy(w, p) })
		}),
	}
	del := &cobra.Command{
		Use:   "delete --id ID | --name NAME",
		Short: "Delete a policy",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			p, err := find(cmd, c)
			if err != nil {
				return err
			}
			if err := c.PolicyDelete(cmd.Context(), p.ID); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Policy %q deleted\n", p.Name)
			return nil
		}),
	}
	for _, sub := range []*cobra.Command{read, del} {
		sub.Flags().StringVar(&id, "id", "", "the policy's ID")
		sub.Flags().StringVar(&name, "name", "", "the policy's name")
	}
	cmd.AddCommand(create, list, read, del)
	return cmd
}

// readRules takes rules inline or, as @FILE, from a file ("@-": stdin).
func readRules(arg string) (string, error) {
	path, ok := strings.CutPrefix(arg, "@")
	if !ok {
		return arg, nil
	}
	if path == "-" {
		b, err := io.ReadAll(os.Stdin)
		return string(b), err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read rules: %w", err)
	}
	return string(b), nil
}

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list, read, clone and delete tokens"}
	var description, id string
	var policyNames, policyIDs []string
	create := &cobra.Command{
		Use:     "create [--policy-name NAME...] [--policy-id ID...] [--description TEXT]",
		Short:   "Create a token with policies",
		Example: `  raftkv acl token create --policy-name web --description "web servers"`,
		Args:    cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			t := client.ACLToken{Description: description}
			for _, n := range policyNames {
				t.Policies = append(t.Policies, client.ACLLink{Name: n})
			}
			for _, p := range policyIDs {
				t.Policies = append(t.Policies, client.ACLLink{ID: p})
			}
			out, err := c.TokenCreate(cmd.Context(), t)
			if err != nil {
				return err
			}
			return a.print(out, func(w io.Writer) { printToken(w, out) })
		}),
	}
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	create.Flags().StringSliceVar(&policyNames, "policy-name", nil, "a policy, by name (repeat for several)")
	create.Flags().StringSliceVar(&policyIDs, "policy-id", nil, "a policy, by ID (repeat for several)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			ts, err := c.TokenList(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(ts, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ACCESSOR ID\tDESCRIPTION\tPOLICIES")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", t.AccessorID, t.Description, linkNames(t))
				}
				tw.Flush()
			})
		}),
	}
	read := &cobra.Command{
		Use:   "read --id ACCESSOR | --self",
		Short: "Show a token (or, with --self, the one this command carries)",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			self, _ := cmd.Flags().GetBool("self")
			var t client.ACLToken
			var err error
			switch {
			case self:
				t, err = c.TokenSelf(cmd.Context())
			case id != "":
				t, err = c.TokenRead(cmd.Context(), id)
			default:
				return errors.New("give --id or --self")
			}
			if err != nil {
				return err
			}
			return a.print(t, func(w io.Writer) { printToken(w, t) })
		}),
	}
	read.Flags().Bool("self", false, "the token this command carries (--token)")
	clone := &cobra.Command{
		Use:   "clone --id ACCESSOR [--description TEXT]",
		Short: "Create a token with another's policies",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			t, err := c.TokenClone(cmd.Context(), id, description)
			if err != nil {
				return err
			}
			return a.print(t, func(w io.Writer) { printToken(w, t) })
		}),
	}
	clone.Flags().StringVar(&description, "description", "", "the clone's description (default: the original's)")
	del := &cobra.Command{
		Use:   "delete --id ACCESSOR",
		Short: "Delete a token: requests carrying it are refused",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if err := c.TokenDelete(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Token %q deleted\n", id)
			return nil
		}),
	}
	for _, sub := range []*cobra.Command{read, clone, del} {
		sub.Flags().StringVar(&id, "id", "", "the token's AccessorID")
	}
	_ = clone.MarkFlagRequired("id")
	_ = del.MarkFlagRequired("id")
	cmd.AddCommand(create, list, read, clone, del)
	return cmd
}

func linkNames(t client.ACLToken) string {
	names := make([]string, 0, len(t.Policies))
	for _, p := range t.Policies {
		names = append(names, p.Name)
	}
	return strings.Join(names, ",")
}

func printToken(w io.Writer, t client.ACLToken) {
	fmt.Fprintf(w, "AccessorID:       %s\nSecretID:         %s\nDescription:      %s\nLocal:            %t\nCreate Time:      %s\nPolicies:\n",
		t.AccessorID, t.SecretID, t.Description, t.Local, t.CreateTime)
	for _, p := range t.Policies {
		fmt.Fprintf(w, "   %s - %s\n", p.ID, p.Name)
	}
}

func printPolicy(w io.Writer, p client.ACLPolicy) {
	fmt.Fprintf(w, "ID:           %s\nName:         %s\nDescription:  %s\nRules:\n%s\n", p.ID, p.Name, p.Description, p.Rules)
}
