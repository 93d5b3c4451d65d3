package charm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gruyaume/goops"

	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/charm/status"
	"github.com/calico-lb/calico-lb/charm/verify"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Action runs action name and reports its result to Juju. Actions that
// come with later work fail saying so.
func (c *Charm) Action(name string) error {
	run, ok := map[string]func() (map[string]string, error){
		"list-allocations":  c.listAllocations,
		"apply-pool-change": c.applyPoolChange,
		"reallocate":        c.reallocate,
		"bgp-status":        c.bgpStatus,
		"sync-calico":       c.syncCalico,
		"verify":            c.verify,
		"failover-test":     c.failoverTest,
	}[name]
	if !ok {
		return goops.FailActionf("action %s is not available yet in this charm revision", name)
	}
	res, err := run()
	if err != nil {
		return goops.FailActionf("%s: %v", name, err)
	}
	return goops.SetActionResults(res)
}

// listAllocations returns the pools and Services as structured keys
// (pools.N.*, services.N.*: indexes, because names may hold characters
// Juju's keys cannot) and the same as a table.
func (c *Charm) listAllocations() (map[string]string, error) {
	var snap api.Snapshot
	if err := c.get("/v1/allocations", &snap); err != nil {
		return nil, fmt.Errorf("workload API: %w", err)
	}
	res := map[string]string{"mode": string(snap.Mode), "source": snap.Source}
	var t bytes.Buffer
	tw := tabwriter.NewWriter(&t, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tADDRESSES\tIN USE\tCAPACITY")
	for i, p := range snap.Pools {
		k := "pools." + strconv.Itoa(i) + "."
		res[k+"name"], res[k+"addresses"] = p.Name, strings.Join(p.Addresses, ",")
		res[k+"in-use"], res[k+"capacity"] = strconv.Itoa(p.InUse), p.Capacity
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p.Name, strings.Join(p.Addresses, ","), p.InUse, p.Capacity)
	}
	fmt.Fprintln(tw, "\nSERVICE\tIPS\tPOOLS\tISSUES")
	for i, s := range snap.Services {
		k := "services." + strconv.Itoa(i) + "."
		res[k+"name"], res[k+"ips"] = s.Namespace+"/"+s.Name, strings.Join(s.IPs, ",")
		res[k+"pools"] = strings.Join(s.Pools, ",")
		if s.Issues != "" {
			res[k+"issues"] = s.Issues
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\n", s.Namespace, s.Name, strings.Join(s.IPs, ","), strings.Join(s.Pools, ","), s.Issues)
	}
	_ = tw.Flush()
	res["table"] = t.String()
	return res, nil
}

// applyPoolChange confirms a held-back pool change on the leading
// workload and says which Services got new IPs.
func (c *Charm) applyPoolChange() (map[string]string, error) {
	var pc api.PoolChange
	err := c.request(http.MethodPost, "/v1/pool-change", 30*time.Second, &pc)
	var ae *apiError
	if errors.As(err, &ae) && ae.code == http.StatusConflict {
		return nil, errors.New("no pool change is held back")
	}
	if err != nil {
		return nil, fmt.Errorf("workload API: %w", err)
	}
	res := map[string]string{"applied": "true", "services-moved": strconv.Itoa(len(pc.Services))}
	var names []string
	for i, s := range pc.Services {
		res["services."+strconv.Itoa(i)] = s.Namespace + "/" + s.Name
		names = append(names, s.Namespace+"/"+s.Name)
	}
	res["summary"] = fmt.Sprintf("pool change applied; %d Service(s) get new IPs: %s", len(names), strings.Join(names, ", "))
	return res, nil
}

// reallocate moves one Service to new addresses and waits (up to 10 s, in
// the workload) until its status shows them.
func (c *Charm) reallocate() (map[string]string, error) {
	var p struct {
		Service string `json:"service"`
	}
	if err := goops.GetActionParams(&p); err != nil || p.Service == "" {
		return nil, errors.New("give the Service as service=namespace/name")
	}
	svc := p.Service
	var r api.Reallocation
	if err := c.request(http.MethodPost, "/v1/reallocate?service="+url.QueryEscape(svc), 30*time.Second, &r); err != nil {
		return nil, err
	}
	res := map[string]string{
		"service": r.Service, "old-ips": strings.Join(r.OldIPs, ","), "new-ips": strings.Join(r.NewIPs, ","),
		"pools": strings.Join(r.Pools, ","), "status-written": strconv.FormatBool(r.Written),
	}
	res["summary"] = fmt.Sprintf("%s moved from %s to %s", r.Service, res["old-ips"], res["new-ips"])
	if !r.Written {
		res["summary"] += " (the Service's status is not updated yet; check it with kubectl)"
	}
	return res, nil
}

// bgpStatus reports each speaker's sessions (and, in l2 mode, the IPs it
// answers for), as gathered by the controller from the speakers themselves.
func (c *Charm) bgpStatus() (map[string]string, error) {
	var st api.Speakers
	if err := c.request(http.MethodGet, "/v1/speakers", 20*time.Second, &st); err != nil {
		return nil, fmt.Errorf("workload API: %w", err)
	}
	return speakersResult(st, time.Now()), nil
}

// speakersResult lays out st as action results: structured keys
// (speakers.N.*, speakers.N.peers.M.*) and a table.
func speakersResult(st api.Speakers, now time.Time) map[string]string {
	res := map[string]string{"mode": string(st.Mode), "speakers": strconv.Itoa(len(st.Speakers))}
	if len(st.Speakers) == 0 {
		if st.Mode == config.ModeCalico {
			res["summary"] = "calico mode: calico-lb runs no speakers; Calico's BIRD announces the pools (check its sessions with `calicoctl node status` on a node)"
		} else {
			res["summary"] = fmt.Sprintf("%s mode, but no speaker pods are running: check the %s DaemonSet in the model's namespace and speaker-node-selector", st.Mode, "calico-lb-speaker")
		}
		return res
	}
	var t bytes.Buffer
	tw := tabwriter.NewWriter(&t, 0, 4, 2, ' ', 0)
	if st.Mode == config.ModeL2 {
		fmt.Fprintln(tw, "NODE\tOWNS\tSPEAKERS ALIVE\tANNOUNCEMENTS\tERROR")
	} else {
		fmt.Fprintln(tw, "NODE\tPEER\tAS\tSTATE\tUPTIME\tBFD\tROUTES\tERROR")
	}
	established, sessions, failing := 0, 0, 0
	for i, sp := range st.Speakers {
		k := "speakers." + strconv.Itoa(i) + "."
		res[k+"node"], res[k+"pod"], res[k+"address"] = sp.Node, sp.Pod, sp.Address
		errMsg := sp.Error
		if errMsg == "" && sp.BGP != nil {
			errMsg = sp.BGP.Error
		}
		if errMsg == "" && sp.L2 != nil && st.Mode == config.ModeL2 {
			errMsg = sp.L2.Error
		}
		if errMsg != "" {
			res[k+"error"] = errMsg
			failing++
		}
		if sp.L2 != nil {
			res[k+"owned"] = strconv.Itoa(len(sp.L2.Owned))
			res[k+"owned-ips"] = strings.Join(sp.L2.Owned, ",")
			res[k+"speakers-alive"] = strings.Join(sp.L2.Alive, ",")
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", sp.Node, len(sp.L2.Owned), len(sp.L2.Alive), sp.L2.GARPs, errMsg)
			continue
		}
		if st.Mode == config.ModeL2 || sp.BGP == nil || len(sp.BGP.Peers) == 0 {
			fmt.Fprintf(tw, "%s\t-\t\t\t\t\t\t%s\n", sp.Node, errMsg)
			continue
		}
		res[k+"routes"] = strconv.Itoa(len(sp.BGP.Routes))
		for j, p := range sp.BGP.Peers {
			pk := k + "peers." + strconv.Itoa(j) + "."
			sessions++
			uptime := "-"
			if p.State == "established" {
				established++
				if !p.Since.IsZero() {
					uptime = now.Sub(p.Since).Round(time.Second).String()
				}
			}
			res[pk+"address"], res[pk+"as"], res[pk+"state"] = p.Address, strconv.FormatUint(uint64(p.ASN), 10), p.State
			res[pk+"uptime"], res[pk+"bfd"], res[pk+"routes"] = uptime, strconv.FormatBool(p.BFD), strconv.Itoa(p.Routes)
			note := errMsg
			if p.Problem != "" {
				res[pk+"problem"] = p.Problem
				note = strings.TrimPrefix(strings.Join([]string{errMsg, p.Problem}, "; "), "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%t\t%d\t%s\n", sp.Node, p.Address, p.ASN, p.State, uptime, p.BFD, p.Routes, note)
			errMsg = ""
		}
	}
	_ = tw.Flush()
	res["table"] = t.String()
	if st.Mode == config.ModeL2 {
		res["summary"] = fmt.Sprintf("l2 mode: %s, %d with errors", status.Count(len(st.Speakers), "speaker"), failing)
	} else {
		res["summary"] = fmt.Sprintf("%s mode: %s, %d/%d sessions established, %d with errors", st.Mode, status.Count(len(st.Speakers), "speaker"), established, sessions, failing)
	}
	return res
}

// syncCalico pushes the pools into calico's service-IP option now (or with
// dry-run, the default, only shows what would change), with the conflict
// check and auto's decision.
func (c *Charm) syncCalico() (map[string]string, error) {
	var p struct {
		DryRun *bool `json:"dry-run"`
	}
	_ = goops.GetActionParams(&p)
	dry := p.DryRun == nil || *p.DryRun
	if err := c.readConfig(); err != nil {
		return nil, err
	}
	if c.cfgErr != nil {
		return nil, fmt.Errorf("invalid config: %w", c.cfgErr)
	}
	if !dry {
		if leader, err := goops.IsLeader(); err != nil || !leader {
			return nil, errors.New("only the leader changes calico's config: juju run calico-lb/leader sync-calico dry-run=false")
		}
	}
	if c.opts.JujuCredentials == "" {
		msg := "no juju-credentials: calico-lb cannot reach calico's model"
		if c.cfg.Mode == config.ModeCalico {
			msg += "; run: " + c.noLinkCommand()
		}
		return nil, errors.New(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.runLink(ctx, dry)
	if err != nil {
		return nil, err
	}
	if !dry {
		c.keepDecision(st)
	}
	mode := c.cfg.Mode
	if st.Mode != "" {
		mode = st.Mode
	}
	res := map[string]string{"mode": string(mode), "dry-run": strconv.FormatBool(dry)}
	if st.Reason != "" {
		res["reason"] = st.Reason
	}
	for i, cf := range st.Conflicts {
		res["conflicts."+strconv.Itoa(i)] = cf
	}
	o := c.link.outcome
	res["summary"] = o.Summary(dry)
	if dry && o.Change != nil && o.Change.Changed() {
		res["summary"] += "; run with dry-run=false to apply"
	}
	if o.Change == nil {
		return res, nil
	}
	ch := o.Change
	res["option"], res["before"], res["after"] = st.Option, ch.Before, ch.Value
	res["added"], res["removed"] = strings.Join(ch.Added, " "), strings.Join(ch.Removed, " ")
	if len(o.Kept) > 0 {
		res["kept"] = strings.Join(o.Kept, " ")
	}
	res["applied"] = strconv.FormatBool(!dry && ch.Changed())
	return res, nil
}

// verify gathers what the workload, the speakers and calico report and
// judges it (charm/verify): each check with its result and, when it
// fails, the fix.
func (c *Charm) verify() (map[string]string, error) {
	var p struct {
		Service string `json:"service"`
	}
	_ = goops.GetActionParams(&p)
	if err := c.readConfig(); err != nil {
		return nil, err
	}
	if c.cfgErr != nil {
		return nil, fmt.Errorf("invalid config: %w", c.cfgErr)
	}
	in := verify.Input{}
	if err := c.request(http.MethodGet, "/v1/services?service="+url.QueryEscape(p.Service), 20*time.Second, &in.Facts); err != nil {
		return nil, fmt.Errorf("workload API: %w", err)
	}
	in.Peers = c.cfg.BGP.AllPeers()
	switch in.Facts.Mode {
	case config.ModeSpine, config.ModeL2:
		var sp api.Speakers
		if in.SpeakersErr = c.request(http.MethodGet, "/v1/speakers", 20*time.Second, &sp); in.SpeakersErr == nil {
			in.Speakers = &sp
		}
	case config.ModeCalico:
		if c.opts.JujuCredentials == "" {
			in.Command = c.noLinkCommand()
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		in.Calico, in.CalicoErr = c.readCalicoOption(ctx)
	}
	checks := verify.Run(in)
	res := map[string]string{"mode": string(in.Facts.Mode), "summary": verify.Summary(checks)}
	var t bytes.Buffer
	tw := tabwriter.NewWriter(&t, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tSERVICE\tCHECK\tDETAIL\tFIX")
	failed := 0
	for i, ch := range checks {
		k := "checks." + strconv.Itoa(i) + "."
		res[k+"name"], res[k+"result"], res[k+"detail"] = ch.Name, ch.Result, ch.Detail
		if ch.Service != "" {
			res[k+"service"] = ch.Service
		}
		if ch.Fix != "" {
			res[k+"fix"] = ch.Fix
		}
		if ch.Result == verify.Fail {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ch.Result, ch.Service, ch.Name, ch.Detail, ch.Fix)
	}
	_ = tw.Flush()
	res["table"], res["failed"] = t.String(), strconv.Itoa(failed)
	return res, nil
}

// readCalicoOption reads the calico option that holds the pools.
func (c *Charm) readCalicoOption(ctx context.Context) (*verify.Calico, error) {
	l, read, opt, err := c.openCalico(ctx)
	if err != nil {
		return nil, err
	}
	l.Client.Close()
	have := read.ServiceIPs[opt]
	ch := calico.Merge(have, calico.PoolCIDRs(c.cfg.Pools), nil)
	return &verify.Calico{Option: opt, CIDRs: have, Missing: ch.Added, Peers: read.ExternalPeers(),
		Command: calicolink.Command(c.opts.CalicoApplication, opt, strings.Fields(ch.Value))}, nil
}
