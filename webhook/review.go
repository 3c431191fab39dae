package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The Deployment webhooks are on the path of every Deployment write in the
// cluster, so they do not go through controller-runtime's generic
// admission.Webhook, which decodes the review with the API machinery's
// serializer, hands the handler the object still as raw bytes to decode a
// second time, and encodes the answer by reflection. reviewHandler decodes
// the AdmissionReview and the Deployments in it with one fast JSON pass each,
// and writes the answer directly. The DeploymentPolicy webhook, called only
// when a platform team edits a policy, keeps controller-runtime's.

// maxReviewBytes bounds a request body, as controller-runtime does: far above
// kube-apiserver's own object size limit.
const maxReviewBytes = 7 << 20

const maxPooledBuffer = 1 << 20

const (
	admissionAPIVersion = "admission.k8s.io/v1"
	admissionReviewKind = "AdmissionReview"
)

// deploymentReview is the part of an AdmissionReview the Deployment webhooks
// read.
type deploymentReview struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Request    *deploymentRequest `json:"request"`
}

// deploymentRequest is an admission request for a Deployment, with the
// object and old object decoded.
type deploymentRequest struct {
	UID       types.UID               `json:"uid"`
	Kind      metav1.GroupVersionKind `json:"kind"`
	Namespace string                  `json:"namespace"`
	Name      string                  `json:"name"`
	Operation admissionv1.Operation   `json:"operation"`
	DryRun    *bool                   `json:"dryRun"`
	UserInfo  requestUser             `json:"userInfo"`
	RawObject jsontext.Value          `json:"object"`
	RawOld    jsontext.Value          `json:"oldObject"`

	// Object and Old are RawObject and RawOld decoded; Old is nil except
	// on UPDATE.
	Object *appsv1.Deployment `json:"-"`
	Old    *appsv1.Deployment `json:"-"`
}

// requestUser is the part of the request's userInfo the handlers read: who
// kube-apiserver authenticated (after impersonation, the impersonated user).
// Its extra map is not needed and is skipped by the decoder.
type requestUser struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups"`
}

// dryRun reports whether the request must have no side effects.
func (r *deploymentRequest) dryRun() bool { return r.DryRun != nil && *r.DryRun }

// deploymentHandler answers one decoded Deployment admission request.
type deploymentHandler func(ctx context.Context, req *deploymentRequest) admission.Response

// reviewHandler serves a deploymentHandler over HTTP as kube-apiserver calls
// it: an AdmissionReview in, an AdmissionReview out, always with HTTP 200 (a
// refusal is an answer, with its code in the status).
type reviewHandler struct {
	webhooks *Webhooks
	handle   deploymentHandler
	metrics  *metrics
	log      logr.Logger
	// recoverPanic turns a panic into a 500 answer; tests turn it off to
	// see the panic.
	recoverPanic bool
}

// bodyBuffers hold a request body, then its answer. Buffers grown past
// maxPooledBuffer by an unusually large object are left to the collector.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func (rh *reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	bufp := bodyBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bufp) <= maxPooledBuffer {
			bodyBuffers.Put(bufp)
		}
	}()
	review, resp := rh.decode(r, bufp)
	var uid types.UID
	op := ""
	if review != nil {
		uid, op = review.Request.UID, string(review.Request.Operation)
		resp = rh.serve(r.Context(), review.Request)
	}
	out := appendReview((*bufp)[:0], uid, &resp)
	*bufp = out
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(out); err != nil {
		rh.log.V(1).Info("write admission answer", "uid", uid, "error", err.Error())
	}
	rh.metrics.duration.WithLabelValues(op, kindDeployment).Observe(time.Since(start).Seconds())
	rh.metrics.requests.WithLabelValues(op, kindDeployment, decision(resp)).Inc()
}

// serve runs the handler, refusing until the policy store has synced.
func (rh *reviewHandler) serve(ctx context.Context, req *deploymentRequest) (resp admission.Response) {
	if !rh.webhooks.synced.Load() {
		return admission.Errored(http.StatusServiceUnavailable, errNotSynced)
	}
	if rh.recoverPanic {
		defer func() {
			if p := recover(); p != nil {
				rh.log.Error(fmt.Errorf("%v", p), "admission handler panicked", "uid", req.UID, "namespace", req.Namespace, "name", req.Name)
				resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("sluice failed to admit this request (%v); it is a bug, please report it", p))
			}
		}()
	}
	return rh.handle(ctx, req)
}

// decode reads and decodes the review. On failure it returns the refusal to
// send instead.
func (rh *reviewHandler) decode(r *http.Request, bufp *[]byte) (*deploymentReview, admission.Response) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return nil, admission.Errored(http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct))
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, admission.Errored(http.StatusBadRequest, errors.New("request body is empty"))
	}
	body, err := readBody((*bufp)[:0], r.Body)
	*bufp = body
	if err != nil {
		return nil, admission.Errored(http.StatusBadRequest, err)
	}
	if len(body) == 0 {
		return nil, admission.Errored(http.StatusBadRequest, errors.New("request body is empty"))
	}
	if len(body) > maxReviewBytes {
		return nil, admission.Errored(http.StatusRequestEntityTooLarge, fmt.Errorf("request entity is too large; limit is %d bytes", maxReviewBytes))
	}
	review, err := decodeReview(body)
	if err != nil {
		rh.log.V(1).Info("refused an undecodable admission request", "error", err.Error())
		return nil, admission.Errored(http.StatusBadRequest, err)
	}
	return review, admission.Response{}
}

// readBody appends up to maxReviewBytes+1 bytes of body to buf.
func readBody(buf []byte, body io.Reader) ([]byte, error) {
	b := bytes.NewBuffer(buf)
	if _, err := b.ReadFrom(io.LimitReader(body, maxReviewBytes+1)); err != nil {
		return b.Bytes(), fmt.Errorf("read the request body: %w", err)
	}
	return b.Bytes(), nil
}

// decodeReview decodes an AdmissionReview of a Deployment: the review, then
// the object (and old object on UPDATE).
func decodeReview(body []byte) (*deploymentReview, error) {
	review := &deploymentReview{}
	if err := jsonv2.Unmarshal(body, review); err != nil {
		return nil, fmt.Errorf("decode the AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionAPIVersion || review.Kind != admissionReviewKind {
		return nil, fmt.Errorf("the body is a %s %q, not an %s of %s (the only version Sluice's webhook configurations accept)",
			orNone(review.APIVersion), review.Kind, admissionReviewKind, admissionAPIVersion)
	}
	req := review.Request
	if req == nil || req.UID == "" || req.Operation == "" {
		return nil, errNotAReview
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return review, nil // allowed as is; no object to read
	}
	if req.Kind.Group != appsv1.GroupName || req.Kind.Kind != "Deployment" {
		return nil, fmt.Errorf("this webhook admits apps/v1 Deployments, not %s", schemaKind(req.Kind))
	}
	var err error
	if req.Object, err = decodeDeployment(req.RawObject, "object"); err != nil {
		return nil, err
	}
	if req.Operation == admissionv1.Update {
		if req.Old, err = decodeDeployment(req.RawOld, "oldObject"); err != nil {
			return nil, err
		}
	}
	return review, nil
}

func orNone(s string) string {
	if s == "" {
		return "(no apiVersion)"
	}
	return s
}

func schemaKind(k metav1.GroupVersionKind) string {
	return fmt.Sprintf("%s/%s, Kind=%s", k.Group, k.Version, k.Kind)
}

// decodeDeployment decodes one object of the request. JSON null counts as
// absent.
func decodeDeployment(raw jsontext.Value, what string) (*appsv1.Deployment, error) {
	if len(raw) == 0 || raw.Kind() == 'n' {
		return nil, fmt.Errorf("the admission request has no %s", what)
	}
	d := &appsv1.Deployment{}
	if err := jsonv2.Unmarshal(raw, d); err != nil {
		return nil, fmt.Errorf("decode %s as a Deployment: %w", what, err)
	}
	return d, nil
}

// appendReview appends the AdmissionReview answering uid with resp.
func appendReview(b []byte, uid types.UID, resp *admission.Response) []byte {
	b = append(b, `{"apiVersion":"`+admissionAPIVersion+`","kind":"`+admissionReviewKind+`","response":{"uid":`...)
	b = appendString(b, string(uid))
	if resp.Allowed {
		b = append(b, `,"allowed":true`...)
	} else {
		b = append(b, `,"allowed":false`...)
	}
	if len(resp.Patch) > 0 && resp.PatchType != nil {
		b = append(b, `,"patchType":`...)
		b = appendString(b, string(*resp.PatchType))
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, resp.Patch)
		b = append(b, '"')
	}
	if len(resp.AuditAnnotations) > 0 {
		b = append(b, `,"auditAnnotations":{`...)
		for i, k := range sortedKeys(resp.AuditAnnotations) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, resp.AuditAnnotations[k])
		}
		b = append(b, '}')
	}
	if len(resp.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range resp.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, w)
		}
		b = append(b, ']')
	}
	if resp.Result != nil {
		// Refusals are the rare case: the status goes through the standard
		// encoder, which knows every field of metav1.Status.
		st, err := json.Marshal(resp.Result)
		if err != nil {
			st = appendString(nil, resp.Result.Message)
			st = append([]byte(`{"code":500,"message":`), append(st, '}')...)
		}
		b = append(b, `,"status":`...)
		b = append(b, st...)
	}
	return append(b, "}}"...)
}

// appendString appends s as a JSON string. Invalid UTF-8 (which a decoded
// request cannot carry, but a message might) is replaced by U+FFFD, as
// encoding/json does; the error AppendQuote reports for it is that notice.
func appendString(b []byte, s string) []byte {
	out, _ := jsontext.AppendQuote(b, s)
	return out
}
