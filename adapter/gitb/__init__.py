"""The GITB validation service API (SOAP), for the EU / eHealth interoperability test bed.

Pure parts only: reading a SOAP request into typed inputs (``envelope``, ``inputs``), the module
definition and validation types (``module``), the TAR report (``tar``), SOAP replies
(``soap``) and the WSDL/XSD texts (``wsdl``). The HTTP edge, the URI fetch and the call to the
validator live in ``adapter.service.routes.gitb``, so that what a test bed sees can be tested
here without a server. See docs/gitb.md.
"""

from adapter.gitb.envelope import NotGitb, SoapRequest, read_request
from adapter.gitb.inputs import ContentRef, GitbRequest, Problem, decode_content, interpret, read_inputs
from adapter.gitb.module import VALIDATION_TYPES, module_definition
from adapter.gitb.tar import TarContext, build_tar, result_of
from adapter.gitb.wsdl import wsdl_text, xsd_text

__all__ = [
    "VALIDATION_TYPES",
    "ContentRef",
    "GitbRequest",
    "NotGitb",
    "Problem",
    "SoapRequest",
    "TarContext",
    "build_tar",
    "decode_content",
    "interpret",
    "module_definition",
    "read_inputs",
    "read_request",
    "result_of",
    "wsdl_text",
    "xsd_text",
]
