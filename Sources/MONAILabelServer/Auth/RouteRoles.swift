import HTTPServer

/// Upstream's four roles; their names on the wire come from `AuthSettings`.
enum Role: Sendable, CaseIterable {
    case admin, reviewer, annotator, user
}

/// What a route asks of the caller when auth is on.
enum Access: Sendable, Equatable {
    /// Anyone (upstream's routes without `RBAC`).
    case open
    /// A valid token, any roles (`GET /auth/token/valid`).
    case signedIn
    /// A valid token whose roles include this one. As upstream, roles do not imply each other: an admin
    /// without `monailabel-user` cannot read `/info/`.
    case role(Role)
}

/// The role each route requires: the `RBAC(...)` of upstream 0.8.5's endpoints (monailabel/endpoints/*.py),
/// keyed by "METHOD template" as registered. This is the one place access is decided.
enum RouteRoles {
    static let table: [String: Access] = [
        "GET /": .open,
        "GET /auth/": .open,
        "POST /auth/token": .open,
        "GET /auth/token/valid": .signedIn,
        "GET /info/": .role(.user),
        "POST /activelearning/{strategy}": .role(.user),
        "POST /infer/{model}": .role(.user),
        // Ours (the inference queue); a status read like GET /train/ and GET /batch/infer.
        "GET /infer/": .role(.user),
        "GET /batch/infer": .role(.user),
        "POST /batch/infer/{model}": .role(.admin),
        "DELETE /batch/infer": .role(.admin),
        "GET /datastore/": .role(.user),
        "PUT /datastore/": .role(.annotator),
        "PUT /datastore/image": .role(.annotator),
        "DELETE /datastore/": .role(.admin),
        "DELETE /datastore/image": .role(.admin),
        "GET /datastore/image": .role(.user),
        "HEAD /datastore/image": .role(.user),
        "GET /datastore/image/info": .role(.user),
        "PUT /datastore/image/info": .role(.annotator),
        "PUT /datastore/label": .role(.annotator),
        "DELETE /datastore/label": .role(.admin),
        "GET /datastore/label": .role(.user),
        "HEAD /datastore/label": .role(.user),
        "GET /datastore/label/info": .role(.user),
        "PUT /datastore/label/info": .role(.annotator),
        "PUT /datastore/updatelabelinfo": .role(.annotator),
        "GET /datastore/dataset": .role(.annotator),
        "GET /logs/": .role(.admin),
        "GET /logs/gpu": .role(.admin),
        "GET /model/{model}": .role(.admin),
        "GET /model/info/{model}": .role(.admin),
        // Upstream's summaries say admin, but its RBAC(...) on these two asks for annotator; the code wins.
        "PUT /model/{model}": .role(.annotator),
        "DELETE /model/{model}": .role(.annotator),
        "GET /scoring/": .role(.user),
        "POST /scoring/": .role(.annotator),
        "POST /scoring/{method}": .role(.annotator),
        "DELETE /scoring/": .role(.annotator),
        "PUT /session/": .role(.user),
        "GET /session/{session_id}": .role(.user),
        "DELETE /session/{session_id}": .role(.user),
        "GET /train/": .role(.user),
        "POST /train/": .role(.admin),
        "POST /train/{model}": .role(.admin),
        "DELETE /train/": .role(.admin),
        // Upstream's OHIF and DICOMweb proxy routes ask for the user role (endpoints/ohif.py, proxy.py).
        "GET /ohif": .role(.user),
        "GET /ohif/{path:path}": .role(.user),
        "GET /proxy/dicom/qido/{path:path}": .role(.user),
        "POST /proxy/dicom/qido/{path:path}": .role(.user),
        "GET /proxy/dicom/wado/{path:path}": .role(.user),
        "POST /proxy/dicom/wado/{path:path}": .role(.user),
        "GET /proxy/dicom/stow/{path:path}": .role(.user),
        "POST /proxy/dicom/stow/{path:path}": .role(.user),
        // Ours: slice previews read images like GET /datastore/image; the API description is open, as
        // FastAPI's /docs and /openapi.json are upstream.
        "GET /datastore/image/preview": .role(.user),
        "GET /docs": .open,
        "GET /openapi.json": .open,
    ]

    /// The access `method template` needs. A route missing from the table needs admin, so a route added
    /// without an entry fails closed (and the router test lists it).
    static func access(_ method: HTTPMethod, _ template: String) -> Access {
        table["\(method.rawValue) \(template)"] ?? .role(.admin)
    }
}
