// Package speakerclient is the leading controller's client for the
// speakers: their pods, and their status API on the node network, called
// with a token for one node's audience at a time.
package speakerclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
)

// Client asks the speakers, on their pods' addresses, with a token for
// each one's node: their status (for the local API, verify and the
// failover test), their journals, and what the failover test asks of one.
type Client struct {
	k8s    kubernetes.Interface
	ns     string
	hc     *http.Client
	tokens *Tokens
	port   int
}

// New returns a client for the speakers in namespace ns, whose status API
// listens on port.
func New(client kubernetes.Interface, ns string, port int) *Client {
	return &Client{k8s: client, ns: ns, hc: api.HTTPClient(3 * time.Second), tokens: NewTokens(client, ns), port: port}
}

// Pods lists the speaker pods, on node only when node is set.
func (s *Client) Pods(ctx context.Context, node string) ([]corev1.Pod, error) {
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + access.SpeakerName}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	pods, err := s.k8s.CoreV1().Pods(s.ns).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list speaker pods in %s: %w", s.ns, err)
	}
	return pods.Items, nil
}

// On finds the running speaker pod on node.
func (s *Client) On(ctx context.Context, node string) (*corev1.Pod, error) {
	pods, err := s.Pods(ctx, node)
	if err != nil {
		return nil, err
	}
	var pod *corev1.Pod
	for i := range pods {
		if p := &pods[i]; p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			pod = p
		}
	}
	if pod == nil {
		return nil, fmt.Errorf("no running speaker pod on %s", node)
	}
	return pod, nil
}

// authorize puts pod's node's token on req.
func (s *Client) authorize(req *http.Request, pod *corev1.Pod) error {
	token, err := s.tokens.ForNode(req.Context(), pod.Spec.NodeName)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return nil
}

func (s *Client) url(pod *corev1.Pod, path string) string {
	return "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(s.port)) + path
}

// Get GETs path (with its query) from pod's speaker into v.
func (s *Client) Get(ctx context.Context, pod *corev1.Pod, path string, v any) error {
	url := s.url(pod, path)
	req, err := s.request(ctx, http.MethodGet, pod, path, nil)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("speaker API unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("speaker API %s: %s", url, resp.Status)
	}
	if err := api.Decode(resp.Body, v); err != nil {
		return fmt.Errorf("speaker API %s: %w", url, err)
	}
	return nil
}

// request is a request to pod's speaker with its node's token.
func (s *Client) request(ctx context.Context, method string, pod *corev1.Pod, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.url(pod, path), body)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(req, pod); err != nil {
		return nil, err
	}
	return req, nil
}

// Post POSTs body as JSON to path on pod's speaker, and decodes the
// answer into out unless it is nil.
func (s *Client) Post(ctx context.Context, pod *corev1.Pod, path string, body, out any) error {
	rd, err := api.Body(body)
	if err != nil {
		return err
	}
	req, err := s.request(ctx, http.MethodPost, pod, path, rd)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("speaker on %s: %w", pod.Spec.NodeName, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("speaker on %s: %s: %s", pod.Spec.NodeName, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		return api.Decode(resp.Body, out)
	}
	return nil
}

// concurrently runs fn for each index, at most 16 at a time, and waits
// for all.
func concurrently(indexes []int, fn func(int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, i := range indexes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}
